"""Checks for the exercises of appendix A (reproduction details)."""
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm as auto_tqdm

from ..data import batches
from . import exercise


def as_list(value):
    """A tensor, or a (nested) list of tensors and ints, as a nested list of ints."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return [as_list(item) for item in value] if isinstance(value, (list, tuple)) else value


def draws_of(make_pass):
    """How many single draws from torch.manual_seed(7) leave the generator where one pass leaves it (global state
    restored afterwards)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        make_pass()
        after = torch.get_rng_state()
        for draws in range(4):
            torch.manual_seed(7)
            for _ in range(draws):
                torch.empty((), dtype=torch.int64).random_()
            if torch.equal(torch.get_rng_state(), after):
                return draws
    return None


@exercise("A.1",
          "Compare torch.get_rng_state() after torch.manual_seed(7) and one pass with the state after 0, 1, 2 "
          "single draws (torch.empty((), dtype=torch.int64).random_()).",
          "Iterating a DataLoader always draws its iterator's base seed; a shuffled one draws the sampler's seed "
          "too. Pass over DataLoader(tiny, 4, shuffle=False), lorautil.batches(tiny_set, 4, shuffle=False) and "
          "DataLoader(tiny, 4, shuffle=True).")
def draws_per_pass(answer, data, dataset):
    """Draws from the global generator per pass: unshuffled DataLoader, unshuffled lorautil.batches, shuffled."""
    expected = {"unshuffled DataLoader": draws_of(lambda: list(DataLoader(data, batch_size=4, shuffle=False))),
                "unshuffled lorautil.batches": draws_of(lambda: list(batches(dataset, 4, shuffle=False))),
                "shuffled DataLoader": draws_of(lambda: list(DataLoader(data, batch_size=4, shuffle=True)))}
    if not isinstance(answer, dict) or set(answer) != set(expected):
        return f"give a dict with the keys {sorted(expected)}"
    wrong = [key for key in expected if answer[key] != expected[key]]
    return f"not the number of draws for: {', '.join(wrong)}" if wrong else True


@exercise("A.2",
          "tqdm.auto calls iter() on the DataLoader when the bar is created: one iterator starts, and draws, "
          "before the loop's own.",
          "After torch.manual_seed(7), make one draw (torch.empty((), dtype=torch.int64).random_()), then "
          "lorautil.batches(tiny_set, 4, shuffle=True).order() gives the loop's order.")
def order_under_tqdm_auto(answer, data, dataset):
    """The order a loop over tqdm.auto(DataLoader) sees from seed 7, observed and predicted with one extra draw."""
    under_auto, predicted = (as_list(order) for order in answer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        expected = as_list(torch.cat(list(auto_tqdm(DataLoader(data, batch_size=4, shuffle=True), disable=True))))
        torch.manual_seed(7)
        plain = as_list(batches(dataset, 4, shuffle=True).order())
    for name, order in (("under_auto", under_auto), ("predicted", predicted)):
        if order == plain != expected:
            return f"{name} is section 1's order, without tqdm.auto's extra draw"
        if order != expected:
            return f"{name} is not the order the loop under tqdm.auto sees"
    return True


@exercise("A.3",
          "Build the DataLoader (and the lorautil.batches) once after torch.manual_seed(3) and iterate the same "
          "object twice, without seeding again in between.",
          "loader_epochs = [torch.cat(list(loader)).tolist() for _ in range(2)], and for lorautil.batches "
          "the labels of each batch, concatenated, per pass.")
def second_epochs(answer, data):
    """Two epochs of one shuffled DataLoader and of one lorautil.batches, from seed 3: the same, and reshuffled."""
    loader_epochs, memory_epochs = (as_list(epochs) for epochs in answer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        loader = DataLoader(data, batch_size=4, shuffle=True)
        expected = [torch.cat(list(loader)).tolist() for _ in range(2)]
    for name, epochs in (("loader_epochs", loader_epochs), ("memory_epochs", memory_epochs)):
        if len(epochs) != 2:
            return f"{name}: give the two epochs, each a list of the 12 indices"
        if epochs[0] == epochs[1]:
            return f"{name}: the second epoch repeats the first; iterate the same object again without re-seeding"
        if epochs != expected:
            return f"{name}: not the two epochs that one shuffled pass after another gives from seed 3"
    return True
