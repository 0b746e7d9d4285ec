"""The order torch's CPU topk and sort pick among equal values: topk's kernel (ATen's TopKImpl.h) runs libstdc++'s
std::partial_sort (k * 64 <= n) or std::nth_element then std::sort, and sort without stable=True runs std::sort, on
(value, index) pairs compared by value alone, so ties come out in the order those algorithms leave them (std::sort is
an insertion sort, stable, up to 16 elements). Here the same algorithms, step for step, on a Python list (rows with
ties only: without ties every correct order is the same one)."""

from __future__ import annotations

from collections.abc import Callable

Item = tuple[float, int]
Less = Callable[[Item, Item], bool]
_THRESHOLD = 16  # libstdc++'s _S_threshold


def _less(values: list[float], largest: bool) -> Less:
    """torch's comparators of (value, index): NaN first and then the largest (descending), or NaN last."""
    nan = [v != v for v in values]
    if largest:
        def less(x: Item, y: Item) -> bool:  # NaN first, then the largest (numpy's and torch's order)
            return (nan[x[1]] and not nan[y[1]]) or x[0] > y[0]
    else:
        def less(x: Item, y: Item) -> bool:
            return (not nan[x[1]] and nan[y[1]]) or x[0] < y[0]
    return less


def sort_indices(values: list[float], descending: bool) -> list[int]:
    """The indices torch.sort(values, descending=descending) (stable unset) returns for one row on the CPU."""
    a: list[Item] = [(v, i) for i, v in enumerate(values)]
    _sort(a, 0, len(a), _less(values, descending))
    return [i for _, i in a]


def topk_indices(values: list[float], k: int, largest: bool) -> list[int]:
    """The indices torch.topk(values, k, largest=largest, sorted=True) returns for one row on the CPU."""
    less = _less(values, largest)
    a: list[Item] = [(v, i) for i, v in enumerate(values)]
    n = len(a)
    if k == 0:
        return []
    if k * 64 <= n:
        _heap_select(a, 0, k, n, less)
        _sort_heap(a, 0, k, less)
    else:
        _introselect(a, 0, k - 1, n, 2 * _lg(n), less)
        _sort(a, 0, k - 1, less)
    return [i for _, i in a[:k]]


def _lg(n: int) -> int:
    return n.bit_length() - 1


def _sort(a: list[Item], first: int, last: int, less: Less) -> None:
    """std::sort: introsort, then a final insertion sort."""
    if first == last:
        return
    _introsort_loop(a, first, last, 2 * _lg(last - first), less)
    if last - first > _THRESHOLD:
        _insertion_sort(a, first, first + _THRESHOLD, less)
        for i in range(first + _THRESHOLD, last):
            _unguarded_linear_insert(a, i, less)
    else:
        _insertion_sort(a, first, last, less)


def _introsort_loop(a: list[Item], first: int, last: int, depth: int, less: Less) -> None:
    while last - first > _THRESHOLD:
        if depth == 0:
            _heap_select(a, first, last, last, less)  # std::__partial_sort(first, last, last): a heap sort
            _sort_heap(a, first, last, less)
            return
        depth -= 1
        cut = _unguarded_partition_pivot(a, first, last, less)
        _introsort_loop(a, cut, last, depth, less)
        last = cut


def _introselect(a: list[Item], first: int, nth: int, last: int, depth: int, less: Less) -> None:
    """std::nth_element."""
    if first == last or nth == last:
        return
    while last - first > 3:
        if depth == 0:
            _heap_select(a, first, nth + 1, last, less)
            a[first], a[nth] = a[nth], a[first]
            return
        depth -= 1
        cut = _unguarded_partition_pivot(a, first, last, less)
        if cut <= nth:
            first = cut
        else:
            last = cut
    _insertion_sort(a, first, last, less)


def _unguarded_partition_pivot(a: list[Item], first: int, last: int, less: Less) -> int:
    mid = first + (last - first) // 2
    _move_median_to_first(a, first, first + 1, mid, last - 1, less)
    return _unguarded_partition(a, first + 1, last, first, less)


def _move_median_to_first(a: list[Item], result: int, i: int, j: int, k: int, less: Less) -> None:
    if less(a[i], a[j]):
        pick = j if less(a[j], a[k]) else k if less(a[i], a[k]) else i
    else:
        pick = i if less(a[i], a[k]) else k if less(a[j], a[k]) else j
    a[result], a[pick] = a[pick], a[result]


def _unguarded_partition(a: list[Item], first: int, last: int, pivot: int, less: Less) -> int:
    while True:
        while less(a[first], a[pivot]):
            first += 1
        last -= 1
        while less(a[pivot], a[last]):
            last -= 1
        if not first < last:
            return first
        a[first], a[last] = a[last], a[first]
        first += 1


def _insertion_sort(a: list[Item], first: int, last: int, less: Less) -> None:
    if first == last:
        return
    for i in range(first + 1, last):
        if less(a[i], a[first]):
            val = a[i]
            a[first + 1 : i + 1] = a[first:i]
            a[first] = val
        else:
            _unguarded_linear_insert(a, i, less)


def _unguarded_linear_insert(a: list[Item], last: int, less: Less) -> None:
    val = a[last]
    nxt = last - 1
    while less(val, a[nxt]):
        a[last] = a[nxt]
        last = nxt
        nxt -= 1
    a[last] = val


def _heap_select(a: list[Item], first: int, middle: int, last: int, less: Less) -> None:
    _make_heap(a, first, middle, less)
    for i in range(middle, last):
        if less(a[i], a[first]):
            _pop_heap(a, first, middle, i, less)


def _sort_heap(a: list[Item], first: int, last: int, less: Less) -> None:
    while last - first > 1:
        last -= 1
        _pop_heap(a, first, last, last, less)


def _pop_heap(a: list[Item], first: int, last: int, result: int, less: Less) -> None:
    value = a[result]
    a[result] = a[first]
    _adjust_heap(a, first, 0, last - first, value, less)


def _make_heap(a: list[Item], first: int, last: int, less: Less) -> None:
    length = last - first
    if length < 2:
        return
    parent = (length - 2) // 2
    while True:
        _adjust_heap(a, first, parent, length, a[first + parent], less)
        if parent == 0:
            return
        parent -= 1


def _adjust_heap(a: list[Item], first: int, hole: int, length: int, value: Item, less: Less) -> None:
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if less(a[first + child], a[first + child - 1]):
            child -= 1
        a[first + hole] = a[first + child]
        hole = child
    if length & 1 == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        a[first + hole] = a[first + child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and less(a[first + parent], value):
        a[first + hole] = a[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    a[first + hole] = value
