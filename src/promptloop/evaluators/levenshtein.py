"""Levenshtein distance (insertions, deletions, substitutions of characters), standard library only.

It uses Hyyrö's bit-parallel form of Myers' algorithm: the n-by-m table is still computed, but a
column of it at a time, as the bits of one Python integer, so the cost is n big-integer
operations on m-bit numbers. Two 5,000-character texts take tens of milliseconds, where a
cell-by-cell table would take seconds.
"""

from __future__ import annotations

__all__ = ["levenshtein"]


def levenshtein(a: str, b: str) -> int:
    """The number of single-character edits that turn `a` into `b`.

    >>> levenshtein("kitten", "sitting")
    3
    """
    if a == b:
        return 0
    # A shared prefix or suffix never needs an edit; dropping it shortens the bit vectors.
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    end_a, end_b = len(a), len(b)
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a -= 1
        end_b -= 1
    a, b = a[start:end_a], b[start:end_b]
    if len(a) < len(b):
        a, b = b, a  # the shorter text becomes the bit vector
    m = len(b)
    if m == 0:
        return len(a)

    positions: dict[str, int] = {}  # character -> bit mask of where it occurs in b
    for i, char in enumerate(b):
        positions[char] = positions.get(char, 0) | (1 << i)
    full = (1 << m) - 1
    last = 1 << (m - 1)
    # pv / mv: where the current column's vertical difference is +1 / -1.
    pv, mv, distance = full, 0, m
    for char in a:
        eq = positions.get(char, 0)
        xv = eq | mv
        xh = ((((eq & pv) + pv) & full) ^ pv) | eq
        ph = mv | (~(xh | pv) & full)
        mh = pv & xh
        if ph & last:
            distance += 1
        elif mh & last:
            distance -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = mh | (~(xv | ph) & full)
        mv = ph & xv
    return distance
