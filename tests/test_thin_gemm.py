"""Edge cases of the packed thin-GEMM kernel of `Linear` (notebook 24) that its notebook does not execute."""
import torch
from folovllm.model import Linear
from folovllm.thin_gemm import ThinGemm, thin_gemm_kernel

def test_layer_made_under_inference_mode():
    # inference tensors have no version counter: the packed weight is keyed on the storage alone
    with torch.inference_mode():
        lin = Linear(32, 48)
        lin.weight.normal_()
        lin.kernel = ThinGemm()
        x = torch.randn(3, 32)
        y = lin(x)
        assert torch.allclose(y, x @ lin.weight.T, atol=1e-4)
        if thin_gemm_kernel() is not None: assert hasattr(lin, '_packed')

def test_kernel_off_gives_the_same_result():
    lin = Linear(40, 64).requires_grad_(False)
    torch.nn.init.normal_(lin.weight)
    x = torch.randn(7, 40)
    lin.kernel = ThinGemm()
    on = lin(x)
    lin.kernel = None
    off = lin(x)
    assert torch.allclose(on, off, atol=1e-4)

def test_rows_beyond_the_kernel_use_torch():
    lin = Linear(16, 32).requires_grad_(False)
    torch.nn.init.normal_(lin.weight)
    lin.kernel = ThinGemm()
    x = torch.randn(100, 16)                       # more rows than THIN_MAX_ROWS: the kernel does not take it
    assert not lin.kernel.fits(lin, x)
    assert torch.allclose(lin(x), x @ lin.weight.T, atol=1e-4)
