"""`python -m safecb bench speed`: the Janus-Pro-1B shape, the random-weight model, both samplers,
and the quick mode end to end through the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from safecb.bench.speed import hf_generate, sampler_figures
from safecb.bench.timing import Call
from safecb.cli import main
from safecb.models.janus_pro import build_backend, build_config, parameter_counts
from safecb.models.sampler import SamplerSettings, sample_image_tokens

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- Janus-Pro-1B's shape, counted by hand
def _linear(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def _resnet(c_in: int, c_out: int) -> int:  # GroupNorm, 3x3 conv, GroupNorm, 3x3 conv, 1x1 shortcut
    shortcut = _conv(c_in, c_out, 1) if c_in != c_out else 0
    return 2 * c_in + _conv(c_in, c_out, 3) + 2 * c_out + _conv(c_out, c_out, 3) + shortcut


def _attn(c: int) -> int:  # GroupNorm, q, k, v, out as 1x1 convs
    return 2 * c + 4 * _conv(c, c, 1)


def vq16_params(base=128, mult=(1, 1, 2, 2, 4), blocks=2, latent=256, embed=8, codes=16384) -> int:
    """LlamaGen's VQ-16 tokenizer (Janus's generation tokenizer), about 72 M parameters."""
    channels = [base * m for m in mult]
    encoder, c = _conv(3, base, 3), base
    for level, out in enumerate(channels):
        for _ in range(blocks):
            encoder += _resnet(c, out) + (_attn(out) if level == len(channels) - 1 else 0)
            c = out
        if level < len(channels) - 1:
            encoder += c * c * 9 + c  # stride-2 downsampling conv
    mid = 2 * _resnet(c, c) + _attn(c)
    encoder += mid + 2 * c + _conv(c, latent, 3)
    decoder, c = _conv(latent, channels[-1], 3) + mid, channels[-1]
    for level, out in enumerate(reversed(channels)):
        for _ in range(blocks + 1):
            decoder += _resnet(c, out) + (_attn(out) if level == 0 else 0)
            c = out
        if level < len(channels) - 1:
            decoder += _conv(c, c, 3)  # upsampling conv
    decoder += 2 * c + _conv(c, 3, 3)
    return encoder + decoder + codes * embed + _conv(latent, embed, 1) + _conv(embed, latent, 1)


def test_janus_pro_1b_shape_has_the_published_parameter_count_without_allocating():
    from transformers import JanusForConditionalGeneration

    vocab, hidden, inter, layers = 102400, 2048, 5632, 24  # DeepSeek-LLM 1.3B as in Janus-Pro-1B
    language_model = vocab * hidden + layers * (4 * hidden * hidden + 3 * hidden * inter + 2 * hidden) + hidden
    d, patches = 1024, (384 // 16) ** 2  # SigLIP-L/16 at 384 px
    vision = (_conv(3, d, 16) + patches * d + 24 * (4 * _linear(d, d) + _linear(d, 4 * d) + _linear(4 * d, d) + 4 * d)
              + 2 * d)
    aligner = _linear(d, hidden) + _linear(hidden, hidden)
    codes = 16384
    generation = (codes * 8 + _linear(8, hidden) + _linear(hidden, hidden)  # input codes and their aligner
                  + _linear(hidden, hidden) + _linear(hidden, codes))  # generation head
    expected = {"language_model": language_model, "lm_head": vocab * hidden, "vision_model": vision,
                "aligner": aligner, "vqmodel": vq16_params(), "generation": generation}
    expected["total"] = sum(expected.values())

    with torch.device("meta"):
        model = JanusForConditionalGeneration(build_config())
    assert all(p.device.type == "meta" for p in model.parameters())  # nothing was allocated
    assert parameter_counts(model) == expected
    assert 2.07e9 < expected["total"] < 2.09e9  # Janus-Pro-1B: 4.18 GB of 16-bit weights
    assert 71e6 < expected["vqmodel"] < 73e6  # VQ-16: 72 M
    assert model.config.vq_config.num_patches ** 2 == 576  # 24 x 24 image tokens, 384 px
    assert model.config.text_config.max_position_embeddings == 16384


# ---------------------------------------------------------------- the random-weight model and the samplers
@pytest.fixture(scope="module")
def quick():
    return build_backend(quick=True, device=torch.device("cpu"), dtype=torch.float32, seed=0)


def test_random_weights_are_finite_distinct_and_buffers_as_transformers_builds_them(quick):
    from transformers import JanusForConditionalGeneration

    model = quick.model
    assert all(torch.isfinite(p).all() for p in model.parameters())
    attn = model.model.language_model.layers[0].self_attn
    assert not torch.equal(attn.q_proj.weight, attn.k_proj.weight)  # tensors do not repeat each other
    assert 0.015 < float(attn.q_proj.weight.detach().std()) < 0.025
    reference = JanusForConditionalGeneration(model.config)  # transformers' own init, buffers included
    for (name, ours), (_, theirs) in zip(model.named_buffers(), reference.named_buffers()):
        assert torch.equal(ours, theirs), name


def test_our_sampler_and_transformers_generate_pick_the_same_greedy_tokens(quick):
    prompts = ["a cat on the grass", "a dog in the snow", "a boat on the sea"]  # one length: no padding
    ids = [quick.generation_ids(p) for p in prompts]
    settings = SamplerSettings(cfg_weight=5.0, temperature=0.0)
    ours, _ = sample_image_tokens(quick.model, ids, [quick.unconditional_ids(i) for i in ids], [0, 1, 2],
                                  quick.n_tokens, settings, quick.pad_id)
    theirs = hf_generate(quick, ids, len(ids), quick.n_tokens, 5.0, greedy=True)
    assert len(ours.unique()) > 2  # not a degenerate grid that any two samplers would agree on
    assert torch.equal(ours, theirs)


def test_full_image_time_is_prefill_plus_per_token_steps():
    calls = [Call(seconds=2.0, prefill_s=0.4, peak_mib=10.0), Call(seconds=2.2, prefill_s=0.6, peak_mib=12.0)]
    f = sampler_figures(calls, batch=4, n_tokens=16, full_tokens=576)
    assert f["step_s"] == pytest.approx((2.1 - 0.5) / 16)
    assert f["full_image_s"] == pytest.approx(0.5 + 576 * 0.1)
    assert f["tokens_per_s"] == pytest.approx(4 * 16 / 2.1)
    assert f["decode_tokens_per_s"] == pytest.approx(4 * 16 / 1.6)
    assert f["full_image_tokens_per_s"] == pytest.approx(4 * 576 / 58.1)
    assert f["peak_mib"] == 12.0
    measured = sampler_figures(calls, batch=4, n_tokens=576, full_tokens=576)
    assert measured["full_image_s"] == pytest.approx(2.1)  # a full image is measured, not extrapolated


# ---------------------------------------------------------------- the quick mode, end to end
def test_quick_mode_through_the_cli_writes_every_figure(tmp_path, capsys):
    path = tmp_path / "speed.json"
    assert main(["bench", "speed", "--quick", "--threads", "1", "--batches", "1,4", "--profile", "1",
                 "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| 4 | **ours / transformers** |" in out and "per 100 prompts" in out
    report = json.loads(path.read_text())
    assert path.with_suffix(".md").exists()
    for key in ("device", "device_name", "dtype", "torch_threads", "shape", "cfg_weight", "tokens",
                "full_image_tokens", "prompt_tokens", "batches", "throughput", "round", "measured_vs_extrapolated",
                "memory_after_build_mib", "weights_mib", "sampler_extra_mib", "sampler_extra_share_of_weights",
                "seconds"):
        assert key in report, key
    assert report["device"] == "cpu" and report["dtype"] == "float32" and report["torch_threads"] == 1
    assert report["cfg_weight"] == 5.0 and report["tokens"] == report["full_image_tokens"] == 16
    assert report["shape"]["params"]["total"] == sum(v for k, v in report["shape"]["params"].items() if k != "total")
    assert [row["batch"] for row in report["throughput"]] == [1, 4]
    for row in report["throughput"]:
        for name in ("ours", "hf"):
            figures = row[name]
            for key in ("seconds", "prefill_s", "step_s", "tokens_per_s", "decode_tokens_per_s", "full_image_s",
                        "full_image_tokens_per_s", "images_per_s", "peak_mib"):
                assert key in figures, key
            assert 0 < figures["prefill_s"] < figures["seconds"]
            assert len(figures["seconds_each"]) == 2  # one A B B A block
            assert figures["peak_mib"] is not None
            low, high = row["seconds_min_max"][name]
            assert low <= figures["seconds"] <= high
            share = row["roofline"][f"{name}_share"]
            assert share == pytest.approx(row["roofline"]["bytes_per_step"] / figures["step_s"]
                                          / (row["roofline"]["copy_bandwidth_gbs"] * 1e9))
        ratio = row["ratio_ours_over_hf"]
        assert ratio["tokens_per_s"] == pytest.approx(row["ours"]["tokens_per_s"] / row["hf"]["tokens_per_s"])
    rd = report["round"]
    assert rd["basis"] == "measured, scaled in prompts" and rd["tokens_per_image"] == 16
    assert rd["images"] == rd["prompt_texts"] * rd["seeds"] and rd["pairs"] == rd["images"] // 3
    assert rd["mined_keys"] > 0
    stages = rd["measured_s"]
    assert set(stages) == {"sample", "decode", "judge", "teacher_forcing", "steps_1_2", "total"}
    assert all(v > 0 for v in stages.values())
    assert stages["total"] == pytest.approx(sum(v for k, v in stages.items() if k != "total"))
    assert rd["full_image_s"] == pytest.approx(stages)  # full images were measured: nothing scaled in tokens
    per_100 = rd["per_100_prompts"]
    assert per_100["steps_1_2"] == stages["steps_1_2"]  # once per round, whatever the prompts
    assert per_100["judge"] == pytest.approx(stages["judge"] * 100 / rd["prompt_texts"])
    # a 100-prompt round samples 34 x 2 images per kind in one call: costed at the largest measured batch, 4
    big = report["throughput"][-1]["ours"]
    assert per_100["sample"] == pytest.approx(100 * rd["seeds"] * big["full_image_s"] / 4)
    assert rd["per_100_prompts_s"] == pytest.approx(sum(v for k, v in per_100.items() if k != "total"))
    i2p = rd["i2p_round_s"]
    per_image = sum(per_100[k] for k in ("sample", "decode", "judge", "teacher_forcing"))
    assert i2p["1_gpu"] == pytest.approx(per_image * 47.03 + per_100["steps_1_2"])
    assert i2p["8_gpu"] == pytest.approx(per_image * 47.03 / 8 + per_100["steps_1_2"])
    assert "all of I2P (4703 prompts)" in out
    # the sampler keeps no fused copy of the weights: only the generator input table beside them
    extra = report["sampler_extra_mib"]
    assert extra["fused_copies"] == 0 and extra["decoder_between_calls"] == 0 and extra["input_table"] > 0
    assert report["sampler_extra_share_of_weights"] == pytest.approx(extra["total"] / report["weights_mib"])
    # the profile of one batch-1 call: operators per token, sorted by time, matmuls among them
    profile = report["profile"]
    assert (profile["batch"], profile["loop"], profile["tokens"]) == (1, "dynamic", 16)
    assert profile["unit"].startswith("CPU operators")
    assert 0 < profile["busy_ms_per_token"] <= profile["wall_ms_per_token"] and 0 < profile["busy_share"] <= 1
    times = [row["calls_per_token"] * row["us_per_call"] for row in profile["top"]]
    assert times == sorted(times, reverse=True) and sum(r["share_of_busy"] for r in profile["top"]) <= 1 + 1e-9
    assert any(row["name"] in ("aten::mm", "aten::addmm", "aten::bmm") for row in profile["top"])
    assert profile["launches_per_token"] >= sum(row["calls_per_token"] for row in profile["top"])
    assert "Where a token's time goes (our sampler, batch 1, dynamic loop" in out


def test_bad_settings_fail_with_one_clear_line(capsys):
    assert main(["bench", "speed", "--quick", "--batches", "0"]) == 2
    assert "batches must be positive" in capsys.readouterr().err
    assert main(["bench", "speed", "--quick", "--tokens", "17"]) == 2
    assert "at most a full image (16)" in capsys.readouterr().err
    assert main(["bench", "speed", "--quick", "--profile", "0"]) == 2
    assert "profile batch must be a positive integer" in capsys.readouterr().err
