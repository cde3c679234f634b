"""Tests of the dual-task V-Net and of loading research (UA-MT / DTC) V-Net weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_uamc.engine.model import DualTaskVNet, count_parameters, load_research_state_dict
from napari_uamc.errors import CheckpointError, InputError


def _eval_model(**kwargs) -> DualTaskVNet:
    torch.manual_seed(0)
    return DualTaskVNet(**kwargs).eval()


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("shape", [(16, 16, 16), (32, 32, 16)])
def test_output_shapes(n_classes, shape):
    model = _eval_model(n_classes=n_classes, width=4)
    seg, sdf = model(torch.randn(2, 1, *shape))
    assert seg.shape == (2, n_classes, *shape)
    assert sdf.shape == (2, n_classes - 1, *shape)
    assert sdf.abs().max() <= 1.0  # tanh head


def test_encode_returns_five_stage_outputs():
    model = _eval_model(width=4)
    features = model.encode(torch.randn(1, 1, 32, 32, 32))
    assert [tuple(f.shape[1:]) for f in features] == [
        (4, 32, 32, 32), (8, 16, 16, 16), (16, 8, 8, 8), (32, 4, 4, 4), (64, 2, 2, 2)
    ]


def test_encode_decode_equals_forward_in_eval():
    model = _eval_model(width=4)
    x = torch.randn(1, 1, 16, 32, 16)
    with torch.no_grad():
        seg, sdf = model(x)
        seg2, sdf2 = model.decode(model.encode(x))
    assert torch.equal(seg, seg2) and torch.equal(sdf, sdf2)


def test_mc_dropout_samples_differ_but_encoder_is_deterministic():
    model = _eval_model(width=4)
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        features = model.encode(x)
        again = model.encode(x)
        assert all(torch.equal(a, b) for a, b in zip(features, again))
        seg_a, sdf_a = model.decode(features, mc_dropout=True)
        seg_b, sdf_b = model.decode(features, mc_dropout=True)
        det_a, _ = model.decode(features, mc_dropout=False)
        det_b, _ = model.decode(features, mc_dropout=False)
        default, _ = model.decode(features)  # eval mode: dropout off
    assert not torch.allclose(seg_a, seg_b)
    assert not torch.allclose(sdf_a, sdf_b)
    assert torch.equal(det_a, det_b)
    assert torch.equal(det_a, default)


def test_dropout_follows_training_mode_and_can_be_forced_off():
    model = _eval_model(width=4, norm="instance").train()
    x = torch.randn(1, 1, 16, 16, 32)
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(x)
        features = model.encode(x)
        off_a, _ = model.decode(features, mc_dropout=False)
        off_b, _ = model.decode(features, mc_dropout=False)
    assert not torch.allclose(a, b)
    assert torch.equal(off_a, off_b)


def test_instance_norm_training_on_single_voxel_bottleneck_is_an_input_error():
    model = _eval_model(width=2, norm="instance").train()
    with pytest.raises(InputError, match="single voxel"):
        model(torch.zeros(1, 1, 16, 16, 16))


def test_zero_dropout_is_deterministic_in_training():
    model = _eval_model(width=4, norm="none", dropout=0.0).train()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x)[0], model(x)[0])


def test_parameter_count_at_paper_width():
    model = DualTaskVNet(width=16, n_classes=2)
    assert count_parameters(model) == pytest.approx(9.4e6, rel=0.03)
    assert model.width == 16 and model.n_classes == 2


def test_gradients_reach_every_parameter():
    model = _eval_model(width=2).train()
    seg, sdf = model(torch.randn(2, 1, 16, 16, 16))
    (seg.mean() + sdf.mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(
    "shape, fragment",
    [((1, 1, 17, 16, 16), "multiple of 16"), ((1, 1, 16, 16, 8), "multiple of 16"),
     ((1, 2, 16, 16, 16), "input channel"), ((1, 16, 16, 16), "5-D")],
)
def test_bad_input_shapes_raise_input_error(shape, fragment):
    model = _eval_model(width=2)
    with pytest.raises(InputError, match=fragment):
        model(torch.zeros(shape))


@pytest.mark.parametrize(
    "kwargs", [{"n_classes": 1}, {"width": 0}, {"norm": "group"}, {"dropout": 1.0}]
)
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(InputError):
        DualTaskVNet(**kwargs)


def test_channels_last_float32_matches_contiguous():
    model = _eval_model(width=4)
    x = torch.randn(2, 1, 16, 16, 32)
    with torch.no_grad():
        seg, sdf = model(x)
        model_cl = model.to(memory_format=torch.channels_last_3d)
        seg_cl, sdf_cl = model_cl(x.to(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(seg_cl, seg, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(sdf_cl, sdf, atol=1e-4, rtol=1e-4)


def test_bfloat16_autocast_on_channels_last_matches_float32_roughly():
    model = _eval_model(width=4)
    x = torch.randn(1, 1, 32, 32, 16)
    with torch.no_grad():
        seg, sdf = model(x)
        model = model.to(memory_format=torch.channels_last_3d)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            seg_bf, sdf_bf = model(x.to(memory_format=torch.channels_last_3d))
    assert seg_bf.dtype == torch.bfloat16
    prob, prob_bf = torch.softmax(seg, 1), torch.softmax(seg_bf.float(), 1)
    assert (prob - prob_bf).abs().max() < 0.05
    assert (sdf - sdf_bf.float()).abs().max() < 0.05


# ----------------------------------------------------------------------------------------------
# Research checkpoints. The table below is written independently of the model code: research
# block name, conv layers, layer kind, input and output channels as multiples of the width
# (0 = the image channels).
RESEARCH_BLOCKS = [
    ("block_one", 1, "same", 0, 1), ("block_one_dw", 1, "down", 1, 2),
    ("block_two", 2, "same", 2, 2), ("block_two_dw", 1, "down", 2, 4),
    ("block_three", 3, "same", 4, 4), ("block_three_dw", 1, "down", 4, 8),
    ("block_four", 3, "same", 8, 8), ("block_four_dw", 1, "down", 8, 16),
    ("block_five", 3, "same", 16, 16), ("block_five_up", 1, "up", 16, 8),
    ("block_six", 3, "same", 8, 8), ("block_six_up", 1, "up", 8, 4),
    ("block_seven", 3, "same", 4, 4), ("block_seven_up", 1, "up", 4, 2),
    ("block_eight", 2, "same", 2, 2), ("block_eight_up", 1, "up", 2, 1),
    ("block_nine", 1, "same", 1, 1),
]
KERNEL = {"same": 3, "down": 2, "up": 2}


def research_state_dict(width, heads, batchnorm=True, prefix=""):
    """Random tensors under the research VNet's names; ``heads`` maps head name -> channels."""
    gen = torch.Generator().manual_seed(1)
    step = 3 if batchnorm else 2  # conv, [BatchNorm3d,] ReLU
    sd = {}
    for name, n_convs, kind, c_in_mult, c_out_mult in RESEARCH_BLOCKS:
        c_out = width * c_out_mult
        for i in range(n_convs):
            c_in = (1 if c_in_mult == 0 else width * c_in_mult) if i == 0 else c_out
            k = KERNEL[kind]
            shape = (c_in, c_out, k, k, k) if kind == "up" else (c_out, c_in, k, k, k)
            sd[f"{name}.conv.{step * i}.weight"] = torch.randn(shape, generator=gen) * 0.3
            sd[f"{name}.conv.{step * i}.bias"] = torch.randn(c_out, generator=gen) * 0.1
            if batchnorm:
                bn = f"{name}.conv.{step * i + 1}"
                sd[f"{bn}.weight"] = 1 + 0.1 * torch.randn(c_out, generator=gen)
                sd[f"{bn}.bias"] = 0.1 * torch.randn(c_out, generator=gen)
                sd[f"{bn}.running_mean"] = 0.1 * torch.randn(c_out, generator=gen)
                sd[f"{bn}.running_var"] = 0.5 + torch.rand(c_out, generator=gen)
                sd[f"{bn}.num_batches_tracked"] = torch.tensor(7)
    for head, channels in heads.items():
        sd[f"{head}.weight"] = torch.randn(channels, width, 1, 1, 1, generator=gen)
        sd[f"{head}.bias"] = torch.randn(channels, generator=gen)
    return {prefix + key: value for key, value in sd.items()}


def research_forward(sd, x, batchnorm=True):
    """The research VNet's forward, computed directly from its state dict (eval mode)."""
    step = 3 if batchnorm else 2
    blocks = {name: (n, kind) for name, n, kind, _, _ in RESEARCH_BLOCKS}

    def run(name, x):
        n_convs, kind = blocks[name]
        for i in range(n_convs):
            w, b = sd[f"{name}.conv.{step * i}.weight"], sd[f"{name}.conv.{step * i}.bias"]
            if kind == "same":
                x = F.conv3d(x, w, b, padding=1)
            elif kind == "down":
                x = F.conv3d(x, w, b, stride=2)
            else:
                x = F.conv_transpose3d(x, w, b, stride=2)
            if batchnorm:
                bn = f"{name}.conv.{step * i + 1}"
                x = F.batch_norm(x, sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"],
                                 sd[f"{bn}.weight"], sd[f"{bn}.bias"], training=False)
            x = F.relu(x)
        return x

    x1 = run("block_one", x)
    x2 = run("block_two", run("block_one_dw", x1))
    x3 = run("block_three", run("block_two_dw", x2))
    x4 = run("block_four", run("block_three_dw", x3))
    x5 = run("block_five", run("block_four_dw", x4))
    x6 = run("block_six", run("block_five_up", x5) + x4)
    x7 = run("block_seven", run("block_six_up", x6) + x3)
    x8 = run("block_eight", run("block_seven_up", x7) + x2)
    x9 = run("block_nine", run("block_eight_up", x8) + x1)
    return {head: F.conv3d(x9, sd[f"{head}.weight"], sd[f"{head}.bias"])
            for head in ("out_conv", "out_conv2") if f"{head}.weight" in sd}


def test_load_uamt_checkpoint_reproduces_its_forward_and_reports_missing_sdf_head():
    width = 2
    sd = research_state_dict(width, {"out_conv": 2}, prefix="module.")
    model = _eval_model(width=width)
    report = load_research_state_dict(model, sd)
    assert report.layout == "ua-mt"
    assert set(report.missing) == {"sdf_head.weight", "sdf_head.bias"}
    assert not report.sigmoid_head_converted
    x = torch.randn(1, 1, 16, 16, 32)
    plain = {key.removeprefix("module."): value for key, value in sd.items()}
    with torch.no_grad():
        expected = research_forward(plain, x)["out_conv"]
        seg, _ = model(x)
    torch.testing.assert_close(seg, expected, atol=1e-4, rtol=1e-4)


def test_load_dtc_checkpoint_maps_heads_and_converts_sigmoid_head():
    width = 2
    sd = research_state_dict(width, {"out_conv": 1, "out_conv2": 1})
    model = _eval_model(width=width)
    report = load_research_state_dict(model, sd)
    assert report.layout == "dtc" and report.missing == ()
    assert report.sigmoid_head_converted
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        expected = research_forward(sd, x)
        seg, sdf = model(x)
    torch.testing.assert_close(sdf, torch.tanh(expected["out_conv"]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.softmax(seg, 1)[:, 1:],
                               torch.sigmoid(expected["out_conv2"]), atol=1e-4, rtol=1e-4)


def test_load_checkpoint_without_norm():
    width = 2
    sd = research_state_dict(width, {"out_conv": 2}, batchnorm=False)
    model = _eval_model(width=width, norm="none")
    load_research_state_dict(model, sd)
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        expected = research_forward(sd, x, batchnorm=False)["out_conv"]
        torch.testing.assert_close(model(x)[0], expected, atol=1e-4, rtol=1e-4)


def test_research_loading_errors():
    model = _eval_model(width=2)
    with pytest.raises(CheckpointError, match="unknown key"):
        load_research_state_dict(model, {**research_state_dict(2, {"out_conv": 2}),
                                         "discriminator.fc.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="unknown key"):
        load_research_state_dict(model, model.state_dict())  # our own names are not research names
    with pytest.raises(CheckpointError, match="layer sizes"):
        load_research_state_dict(model, research_state_dict(4, {"out_conv": 2}))
    with pytest.raises(CheckpointError, match="no place for"):
        load_research_state_dict(_eval_model(width=2, norm="none"),
                                 research_state_dict(2, {"out_conv": 2}))
    with pytest.raises(CheckpointError, match="empty"):
        load_research_state_dict(model, {})
    with pytest.raises(CheckpointError):
        load_research_state_dict(model, [1, 2])
