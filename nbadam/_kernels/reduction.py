"""What the loops of a reduction add: tuples of float64 terms, summed per chunk.

An update with a reduction (:attr:`nbadam.rules.Update.reduce`) returns, per
element, a tuple of one to four float64 terms; the loops add them up with
``add_terms`` (one function per length, so that every target compiles plain
tuple arithmetic) starting from ``ZEROS[length]``.

The CPU kernels sum fixed chunks of :data:`CHUNK` elements, then the chunks'
sums in order: the result depends on the vector's length only, not on the
number of threads, so the serial and parallel builds agree bit for bit.
"""

from __future__ import annotations

from ._build import piece

#: Elements per chunk of the CPU reduction.  Fixed (not a tunable of ``_config``):
#: the last bits of the sums depend on it.
CHUNK = 4096


@piece
def add_terms1(a, b):
    return (a[0] + b[0],)


@piece
def add_terms2(a, b):
    return (a[0] + b[0], a[1] + b[1])


@piece
def add_terms3(a, b):
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


@piece
def add_terms4(a, b):
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3])


#: ``add_terms`` by the number of sums.
ADD_TERMS = {1: add_terms1, 2: add_terms2, 3: add_terms3, 4: add_terms4}
#: The starting tuple by the number of sums.
ZEROS = {count: (0.0,) * count for count in ADD_TERMS}
