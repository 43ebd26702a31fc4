"""Expert parallelism on 2 CPU Ray Train workers (gloo): EP=2 equals EP=1 (outputs, gradients, clipped
update, router metrics, aux-free bias), full checkpoints reshard, and bad EP sizes fail clearly."""

from __future__ import annotations

import json
import sys

import pytest
import ray.cloudpickle
import ray.train
from ray.train.torch import TorchTrainer

from raybio.models.model import BioLM

CASES = {
    "softmax_shared": {"router": "softmax", "top_k": 2, "num_shared_experts": 1, "aux_loss_coef": 0.1},
    "aux_free_capacity": {"router": "aux_free", "top_k": 2, "capacity_factor": 0.75, "bias_update_rate": 0.05},
}


def _ep_worker(config: dict) -> None:
    """Train one step with EP=1 (plain DDP) and EP=2 side by side; write the differences to a file."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from raybio.config import load_config
    from raybio.models.moe import aux_free_routers, router_metrics, update_expert_biases
    from raybio.train import parallel

    rank = dist.get_rank()
    report: dict = {}
    try:
        parallel.init_expert_parallel(3)
    except ValueError as err:
        report["bad_ep_size_error"] = str(err)

    for case, moe in config["cases"].items():
        overrides = {
            "model": {
                "pattern": "A",
                "n_layers": 2,
                "d_model": 32,
                "n_heads": 2,
                "moe": {"num_experts": 4, "z_loss_coef": 0.01, **moe},
            }
        }

        def build(ep_size: int, overrides=overrides):
            exp = load_config("tiny", overrides=overrides)
            exp.model.moe.ep_size = ep_size
            torch.manual_seed(0)  # the same full init on both ranks and for both layouts
            return BioLM(exp.model, 40)

        ref, sharded = build(1), build(2)
        ep = parallel.setup_expert_parallel(sharded, 2)
        models = {"ref": DDP(ref), "ep": DDP(sharded)}
        opts = {k: torch.optim.SGD(m.parameters(), lr=0.1) for k, m in models.items()}
        gen = torch.Generator().manual_seed(100 + rank)  # each rank its own batch
        x = torch.randint(0, 40, (2, 16), generator=gen)
        outs = {k: m(x, x) for k, m in models.items()}
        for out in outs.values():
            out.loss.backward()
        parallel.reduce_expert_grads(sharded, ep)
        ref_params = dict(ref.named_parameters())

        def shard_of(name: str, t):
            return t[2 * rank : 2 * rank + 2] if name.rsplit(".", 1)[-1] in ("w1_EDH", "w3_EDH", "w2_EHD") else t

        def max_diff(pairs) -> float:
            return max((a - b).abs().max().item() for a, b in pairs)

        r = {
            "local_experts": sharded.moe_layers()[0].w1_EDH.shape[0],
            "logits": max_diff([(outs["ref"].logits, outs["ep"].logits)]),
            "loss": abs(outs["ref"].loss.item() - outs["ep"].loss.item()),
            "grads": max_diff((shard_of(n, ref_params[n].grad), p.grad) for n, p in sharded.named_parameters()),
            "expert_grad_norm": sharded.moe_layers()[0].w1_EDH.grad.norm().item(),
        }
        norm_ref = torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.05)
        norm_ep = parallel.clip_grad_norm_(sharded, 0.05, ep)
        r["clip_norm"] = abs(norm_ref.item() - norm_ep.item())
        r["clipped"] = norm_ref.item() > 0.05
        before = {n: p.detach().clone() for n, p in sharded.named_parameters()}
        for k, opt in opts.items():
            opt.step()
            update_expert_biases(aux_free_routers(models[k].module))
        # The update each layout took, relative to the largest update: both must take the same step.
        ref_update = {n: shard_of(n, ref_params[n]).detach() - before[n] for n in before}
        largest = max(u.abs().max().item() for u in ref_update.values())
        r["update"] = max_diff((ref_update[n], p.detach() - before[n]) for n, p in sharded.named_parameters()) / largest
        r["expert_bias"] = (
            max_diff(
                (a.router.expert_bias_E, b.router.expert_bias_E)
                for a, b in zip(ref.moe_layers(), sharded.moe_layers(), strict=True)
                if hasattr(a.router, "expert_bias_E")
            )
            if moe["router"] == "aux_free"
            else 0.0
        )
        m_ref, m_ep = router_metrics(ref), router_metrics(sharded)
        r["metric_keys_equal"] = sorted(m_ref) == sorted(m_ep)
        r["metrics"] = max(abs(m_ref[k] - m_ep[k]) for k in m_ref)
        r["drop_fraction"] = m_ep["router/layer0/drop_fraction"]
        # Full checkpoint from EP=2 == EP=1 state; it loads back into a fresh EP=2 model.
        full = parallel.full_state_dict(sharded)
        ref_state = ref.state_dict()
        r["full_state"] = max_diff((ref_state[k], v) for k, v in full.items())
        r["full_state_keys_equal"] = sorted(full) == sorted(ref_state)
        again = build(2)
        parallel.setup_expert_parallel(again, 2)
        again.load_state_dict(full)
        r["reload"] = max_diff((p, q) for p, q in zip(again.parameters(), sharded.parameters(), strict=True))
        report[case] = r
    with open(f"{config['out']}/rank{rank}.json", "w") as f:
        json.dump(report, f)


def test_ep2_equals_ep1_on_two_ray_train_workers(ray_local, tmp_path):
    # The worker function lives in this test module, which Ray workers cannot import by name.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    trainer = TorchTrainer(
        _ep_worker,
        train_loop_config={"cases": CASES, "out": str(tmp_path)},
        scaling_config=ray.train.ScalingConfig(num_workers=2, use_gpu=False),
        run_config=ray.train.RunConfig(name="ep", storage_path=str(tmp_path / "ray")),
    )
    trainer.fit()
    for rank in range(2):
        report = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert "moe.ep_size (3) must divide the number of workers (2)" in report["bad_ep_size_error"]
        for case in CASES:
            r = report[case]
            assert r["local_experts"] == 2
            assert r["expert_grad_norm"] > 0
            assert r["clipped"]  # the tiny max_norm makes clipping (and its global norm) matter
            assert r["metric_keys_equal"] and r["full_state_keys_equal"]
            for key in ("logits", "loss", "grads", "clip_norm", "update", "expert_bias", "metrics"):
                assert r[key] < 2e-5, (case, rank, key, r[key])
            assert r["full_state"] < 2e-5 and r["reload"] == 0.0
        assert report["aux_free_capacity"]["drop_fraction"] > 0  # capacity actually dropped slots
        assert report["softmax_shared"]["drop_fraction"] == 0


def test_ep_size_must_divide_the_expert_count():
    from raybio.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"num_experts \(6\) must be divisible by ep_size \(4\)"):
        load_config("tiny", overrides=["model.moe.num_experts=6", "model.moe.ep_size=4"])


def test_ep_without_torch_distributed_says_how_to_run_it():
    from raybio.train.parallel import init_expert_parallel

    with pytest.raises(RuntimeError, match=r"needs torch.distributed: train through Ray Train"):
        init_expert_parallel(2)


def test_training_loop_trains_expert_parallel_and_saves_full_experts(ray_local, lambda_corpus, tmp_path):
    """The real worker loop with moe.ep_size=2 on 2 workers: it trains, reports router metrics, and its
    checkpoint holds whole expert tensors that load into an unsharded model. (That EP computes what
    EP=1 does is the test above; that the loop learns is tests/test_distributed_training_learns.py.)"""
    import torch

    from raybio.config import deep_merge, validate
    from raybio.train.ray_trainer import build_trainer

    shards_uri, manifest, exp = lambda_corpus
    moe = {"num_experts": 4, "top_k": 2, "ep_size": 2, "router": "aux_free", "dead_expert_window": 5}
    exp = validate(
        deep_merge(
            exp.model_dump(),
            {"train": {"num_workers": 2, "max_steps": 10}, "model": {"pattern": "A", "moe": moe}},
        )
    )
    result = build_trainer(exp, shards_uri, manifest, str(tmp_path), "ep2").fit()
    m = result.metrics
    assert m["step"] == 10 and m["world_size"] == 2
    assert m["val_loss"] > 0 and m["params_active"] < m["params_total"]
    for layer in range(exp.model.n_layers):
        loads = [m[f"router/layer{layer}/tokens_e{j}"] for j in range(4)]
        # Each worker routes 8 x 64 tokens to 2 experts per training pass.
        assert sum(loads) == pytest.approx(8 * 64 * 2), loads
        assert 0 <= m[f"router/layer{layer}/dead_experts"] <= 4
        assert m[f"router/layer{layer}/routing_entropy"] > 0
    with result.checkpoint.as_directory() as d:
        state = torch.load(f"{d}/model.pt")
    assert state["blocks.0.ffn.experts.w1_EDH"].shape[0] == 4  # whole, not one rank's half
    single = exp.model.model_copy(deep=True)
    single.moe.ep_size = 1
    BioLM(single, manifest.tokenizer.vocab_size).load_state_dict(state)


def test_experiment_config_rejects_ep_sizes_the_run_cannot_use():
    from raybio.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"moe.ep_size \(2\) must divide train.num_workers \(3\)"):
        load_config("tiny", overrides=["model.moe.ep_size=2", "train.num_workers=3"])
    with pytest.raises(ConfigError, match=r"needs train.zero_stage <= 2 with engine=deepspeed"):
        ds3 = ["train.engine=deepspeed", "train.zero_stage=3"]
        load_config("tiny", overrides=["model.moe.ep_size=2", "train.num_workers=2", *ds3])
