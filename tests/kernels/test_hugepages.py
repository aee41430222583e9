import mmap
import sys

import pytest
import torch

from qlab.kernels import hugepages


def test_small_buffers_are_plain_tensors():
    t = hugepages.empty_bytes(1000)
    assert t.dtype == torch.uint8 and t.numel() == 1000


def test_large_buffer_holds_its_data_and_outlives_the_first_tensor():
    n = hugepages.MIN_BYTES + 12345   # not a multiple of the page size
    t = hugepages.empty_bytes(n)
    assert t.dtype == torch.uint8 and t.numel() == n
    pattern = torch.randint(0, 256, (n,), dtype=torch.uint8)
    t.copy_(pattern)
    tail = t[-4096:]
    del t   # the view must keep the mapping alive
    assert torch.equal(tail, pattern[-4096:])


@pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_HUGEPAGE"),
                    reason="huge pages are asked for on Linux only")
def test_large_buffer_starts_on_a_huge_page_boundary():
    t = hugepages.empty_bytes(hugepages.MIN_BYTES)
    assert t.data_ptr() % hugepages.HUGE_PAGE == 0
