"""The resources a run asks Ray for (qzoo/scaleout.py), and the refusal of a run bigger than every node."""

import pytest

from qzoo.config import ConfigError
from qzoo.scaleout import check_fits, run_resources


@pytest.mark.parametrize(("config", "cluster_gpus", "expected"), [
    ({"torch_threads": 0, "device": "auto"}, 0, {"num_cpus": 1, "num_gpus": 0}),  # 0 = auto: one thread
    ({"torch_threads": 1, "device": "auto"}, 2, {"num_cpus": 1, "num_gpus": 1}),  # auto takes a GPU where there is one
    ({"torch_threads": 4, "device": "cpu"}, 2, {"num_cpus": 4, "num_gpus": 0}),
    ({"torch_threads": 2, "device": "cuda:1"}, 0, {"num_cpus": 2, "num_gpus": 1}),  # refused later by check_fits
])
def test_run_resources(config, cluster_gpus, expected):
    assert run_resources(config, cluster_gpus) == expected


class FakeRay:
    """Just ray.nodes(), as a two-node cluster reports it."""

    @staticmethod
    def nodes():
        return [{"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": True, "Resources": {"CPU": 4.0}},
                {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]  # a dead node counts for nothing


def test_check_fits_refuses_a_run_bigger_than_every_live_node():
    check_fits(FakeRay, {"run a": {"num_cpus": 4, "num_gpus": 0}})  # fits the 4-CPU node
    with pytest.raises(ConfigError, match=r"^run b needs 5 CPUs \(its torch_threads\), but the largest node of the "
                                          r"Ray cluster has 4; lower it"):
        check_fits(FakeRay, {"run a": {"num_cpus": 1, "num_gpus": 0}, "run b": {"num_cpus": 5, "num_gpus": 0}})
    with pytest.raises(ConfigError, match="^run c needs a GPU .* but no node of the Ray cluster has one"):
        check_fits(FakeRay, {"run c": {"num_cpus": 1, "num_gpus": 1}})
