"""The shared plots draw what they claim: bars, labels, legends, cell counts, curves (notebook 02)."""
import matplotlib.pyplot as plt
import pytest
import torch

import lorautil


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_per_digit_bars_one_group_per_digit_and_a_legend_for_several_series():
    wrong = lorautil.EvalResult(0.9, [0.9] * 10, list(range(10)), torch.zeros(10, 10, dtype=torch.long), None)
    ax = lorautil.plot_per_digit({"base": wrong, "tuned": [1] * 10}, title="errors")
    assert len(ax.patches) == 20
    assert [bar.get_height() for bar in ax.patches[:10]] == list(range(10))  # an EvalResult gives wrong_counts
    assert ax.get_xlabel() == "digit" and ax.get_ylabel() == "wrong predictions" and ax.get_title() == "errors"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["base", "tuned"]
    assert lorautil.plot_per_digit({"only": [1] * 10}).get_legend() is None


def test_confusion_matrix_writes_each_nonzero_count():
    confusion = torch.zeros(10, 10, dtype=torch.long)
    confusion[3, 5], confusion[7, 7] = 4, 120
    ax = lorautil.plot_confusion(confusion, title="cm")
    assert sorted(t.get_text() for t in ax.texts) == ["120", "4"]
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true" and ax.get_title() == "cm"


def test_loss_curves_are_smoothed_and_end_at_the_last_step():
    ax = lorautil.plot_losses({"a": [1.0] * 100, "b": [2.0] * 100}, window=10)
    (a, b) = ax.get_lines()
    assert list(a.get_xdata())[0] == 10 and list(a.get_xdata())[-1] == 100
    assert set(b.get_ydata()) == {2.0}
    assert ax.get_ylabel() == "loss (mean of 10 steps)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]


def test_moving_average_of_a_known_series():
    assert lorautil.moving_average([1, 2, 3, 4, 5], 2).tolist() == [1.5, 2.5, 3.5, 4.5]
    assert lorautil.moving_average([1, 2, 3], 10).tolist() == [2.0]  # window capped at the length


def test_digits_are_drawn_back_in_pixels_with_titles():
    pixels = torch.rand(3, 28, 28)
    images = lorautil.normalize((pixels * 255).round().to(torch.uint8))
    assert torch.allclose(lorautil.to_pixels(images), (pixels * 255).round() / 255, atol=1e-6)
    fig = lorautil.show_digits(images, titles=["a", "b", "c"], columns=2)
    assert len(fig.axes) == 4  # a 2x2 grid; the fourth stays empty
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c", ""]
    assert [len(ax.images) for ax in fig.axes] == [1, 1, 1, 0]


def test_misclassified_digits_are_titled_true_then_predicted():
    dataset = lorautil.MNISTTensors(torch.zeros(4, 784), torch.tensor([1, 2, 3, 4]))
    result = lorautil.EvalResult(0.5, None, None, None, torch.tensor([1, 7, 3, 9]))
    fig = lorautil.show_misclassified(dataset, result, columns=4)
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["2→7", "4→9"]
