"""The source documents' code as they wrote it, kept to show what they did (notebook 02).

"Revolutionizing LLM Fine-Tuning: Low-Rank Adaptation (LoRA)" trains DigitsNet through torchvision
DataLoaders; the course trains from memory and checks, in notebook 02 and the tests, that both give
the same model bit for bit.
"""
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms

from .data import MNIST_MEAN, MNIST_STD, mnist_dataset
from .model import DigitsNet


def document_transform():
    """The documents' transform: ToTensor, then Normalize with their mean 0.1301 and std 0.3081 (notebook 02)."""
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])


def document_loaders():
    """The documents' train loader (batch 10, shuffled) and test loader (batch 10) (notebook 02)."""
    train = DataLoader(mnist_dataset(True, transform=document_transform()), batch_size=10, shuffle=True)
    test = DataLoader(mnist_dataset(False, transform=document_transform()), batch_size=10)
    return train, test


def document_training(train_batches):
    """The documents' loop: seed 0, the model after the loaders, Adam(1e-3), one pass (notebook 02)."""
    torch.manual_seed(0)
    model = DigitsNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    loss_fn = nn.CrossEntropyLoss()
    for x, y in train_batches:
        optimizer.zero_grad()
        loss_fn(model(x.view(-1, 28 * 28)), y).backward()
        optimizer.step()
    return model


def document_accuracy(model, test_loader):
    """Test accuracy the documents' way: argmax per image over a DataLoader (notebook 02)."""
    correct = 0
    with torch.no_grad():
        for x, y in test_loader:
            correct += (model(x.view(-1, 28 * 28)).argmax(dim=1) == y).sum().item()
    return correct / len(test_loader.dataset)
