import pytest

from hf_lrschedule.schedules import cosine_decay, linear_decay, linear_table, table_schedule

LR = 10.0

# Expected values computed by hand at lr = 10 (transformers' test style).
CASES = {
    "linear, no warmup": (dict(num_training_steps=5), [10.0, 8.0, 6.0, 4.0, 2.0, 0.0, 0.0]),
    "linear, 2 warmup": (dict(num_training_steps=6, num_warmup_steps=2), [0.0, 5.0, 10.0, 7.5, 5.0, 2.5, 0.0, 0.0]),
    "linear, floor 0.2": (dict(num_training_steps=4, min_lr_ratio=0.2), [10.0, 8.0, 6.0, 4.0, 2.0, 2.0]),
}


@pytest.mark.parametrize("name", CASES)
def test_linear_decay_table(name):
    kwargs, expected = CASES[name]
    got = [LR * linear_decay(t, **kwargs) for t in range(len(expected))]
    assert got == pytest.approx(expected)


def test_linear_decay_matches_transformers_linear_exactly():
    import torch
    from transformers import get_linear_schedule_with_warmup

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=3, num_training_steps=17)
    fn = sched.lr_lambdas[0]
    assert [fn(t) for t in range(20)] == [linear_decay(t, num_training_steps=17, num_warmup_steps=3) for t in range(20)]


def test_table_schedule_reads_matching_table_exactly_and_joins_warmup():
    table = [0.5, 1.0, 0.25, 0.0]  # decay phase of 3 steps
    got = [table_schedule(t, table=table, num_training_steps=5, num_warmup_steps=2) for t in range(7)]
    # warmup ramps 0 -> table[0] over 2 steps, then one entry per step, then the last entry is held
    assert got == [0.0, 0.25, 0.5, 1.0, 0.25, 0.0, 0.0]


def test_table_schedule_interpolates_by_training_fraction():
    table = [1.0, 0.0]  # two points: start and end
    got = [table_schedule(t, table=table, num_training_steps=4) for t in range(5)]
    assert got == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_linear_table_through_table_schedule_is_transformers_linear():
    T, W = 11, 3
    table = linear_table(T - W)
    got = [table_schedule(t, table=table, num_training_steps=T, num_warmup_steps=W) for t in range(T + 2)]
    assert got == [linear_decay(t, num_training_steps=T, num_warmup_steps=W) for t in range(T + 2)]


def test_table_schedule_floor():
    got = [table_schedule(t, table=[1.0, 0.5, 0.0], num_training_steps=2, min_lr_ratio=0.1) for t in range(3)]
    assert got == pytest.approx([1.0, 0.55, 0.1])


def test_cosine_endpoints():
    assert cosine_decay(0, num_training_steps=10) == 1.0
    assert cosine_decay(5, num_training_steps=10) == pytest.approx(0.5)
    assert cosine_decay(10, num_training_steps=10) == pytest.approx(0.0)
