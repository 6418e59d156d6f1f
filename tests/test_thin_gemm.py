"""Edge cases of the packed thin-GEMM path of `Linear` (notebook 23) that its notebook does not execute."""
import torch
from folovllm.model import Linear
from folovllm.thin_gemm import set_thin_gemm, thin_gemm_kernel

def test_layer_made_under_inference_mode():
    # inference tensors have no version counter: the packed weight is keyed on the storage alone
    with torch.inference_mode():
        lin = Linear(32, 48)
        lin.weight.normal_()
        x = torch.randn(3, 32)
        y = lin(x)
        assert torch.allclose(y, x @ lin.weight.T, atol=1e-4)
        if thin_gemm_kernel() is not None: assert hasattr(lin, '_packed')

def test_switch_off_gives_the_same_result():
    lin = Linear(40, 64).requires_grad_(False)
    torch.nn.init.normal_(lin.weight)
    x = torch.randn(7, 40)
    on = lin(x)
    set_thin_gemm(False)
    try: off = lin(x)
    finally: set_thin_gemm(True)
    assert torch.allclose(on, off, atol=1e-4)
