"""Results of many runs (settings x seeds) as lists of dicts: select, group and average them (notebook 05)."""
import statistics


def select(rows, **conditions):
    """The rows whose fields equal `conditions`, e.g. select(rows, method="r=8", step=200) (notebook 05)."""
    return [row for row in rows if all(row[key] == value for key, value in conditions.items())]


def group_by(rows, key):
    """{value of `key`: [rows with that value]}, in first-seen order (notebook 05)."""
    groups = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    return groups


def mean_std(rows, measure):
    """(mean, sample standard deviation) of `measure` over `rows`, e.g. over seeds; 0 for one row (notebook 05)."""
    values = [row[measure] for row in rows]
    if not values:
        raise ValueError(f"no rows to average {measure!r} over: check the selection")
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def best_by(rows, key, measure):
    """(value of `key` whose rows have the highest mean `measure`, that mean), e.g. the best lr (notebook 05)."""
    groups = group_by(rows, key)
    if not groups:
        raise ValueError(f"no rows to choose a {key!r} from: check the selection")
    means = {value: mean_std(group, measure)[0] for value, group in groups.items()}
    best = max(means, key=means.get)
    return best, means[best]



def clearly_above(a, b, measure=None):
    """True if a's mean beats b's by more than their two standard deviations together (notebook 05).

    a and b are runs (dicts, compared on `measure`) or, with measure=None, plain lists of numbers.
    """
    if measure is None:
        a, b, measure = [{"value": v} for v in a], [{"value": v} for v in b], "value"
    (mean_a, std_a), (mean_b, std_b) = mean_std(a, measure), mean_std(b, measure)
    return mean_a - mean_b > std_a + std_b
