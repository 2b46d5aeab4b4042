"""tools/predgs_share.py's decomposition of PredGS's output into the coarse and the rendered terms."""
import torch

from pdr.cli.predgs_share import fusion_parts
from pdr.registry import ADAPTERS


def test_coarse_and_rendered_terms_add_up_to_the_output():
    torch.manual_seed(0)
    adapter = ADAPTERS.build("predgs", frame_shape=(3, 16, 16), num_gaussians=9, kernel_size=7, pool=4, hidden=8,
                             backend="torch").eval()
    coarse = torch.rand(2, 3, 3, 16, 16)
    with torch.no_grad():
        parts = fusion_parts(adapter, coarse)
        assert torch.equal(parts["rendered"], torch.zeros_like(coarse))  # fusion starts as the identity on c
        torch.testing.assert_close(parts["coarse"], coarse)
        adapter.fuse.weight.normal_()
        adapter.fuse.bias.normal_()
        parts = fusion_parts(adapter, coarse)
        # the 1x1 convolution written out per pixel: out[o] = sum_i W[o, i] * concat(c, r)[i] + b[o]
        w, b = adapter.fuse.weight[:, :, 0, 0], adapter.fuse.bias
        stacked = torch.cat([coarse, parts["render"]], dim=2)
        expected = (w[None, None, :, :, None, None] * stacked[:, :, None]).sum(3) + b.view(1, 1, 3, 1, 1)
        torch.testing.assert_close(parts["coarse"] + parts["rendered"], expected)
        torch.testing.assert_close(parts["coarse"] + parts["rendered"], adapter(coarse))
