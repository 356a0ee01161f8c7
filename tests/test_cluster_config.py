"""Offline checks of cluster.yaml, the Ray cluster-launcher config (no AWS, no network).

Every check runs twice: on the file as written, and on the config that `ray up` really uses.
That second config is the file after Ray's `prepare_config`, which merges in
ray/autoscaler/aws/defaults.yaml. This matters because a key left out of cluster.yaml is
taken from those defaults. For example, the default head start command binds the dashboard
to 0.0.0.0.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
CONSTRAINTS = ROOT / "constraints.txt"

DASHBOARD_PORT = 8265
TORCH_PIN = "torch==2.13.0"
TORCHVISION_PIN = "torchvision==0.28.0"
# docs/cluster.md: `resources: {cpu: 4, gpu: 0.5}` runs two trials per GPU.
EXAMPLE_TRIAL = {"CPU": 4, "GPU": 0.5}

START_KEYS = ("head_start_ray_commands", "worker_start_ray_commands")


def _load_raw() -> dict:
    with open(CLUSTER_YAML) as f:
        return yaml.safe_load(f)


def _ray_schema() -> dict:
    import ray.autoscaler

    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    return json.loads(path.read_text())


def _prepared(raw: dict) -> dict:
    """What `ray up` does before its first AWS call (commands._bootstrap_config)."""
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(copy.deepcopy(raw))


@pytest.fixture(scope="module")
def raw() -> dict:
    return _load_raw()


@pytest.fixture(scope="module", params=["as_written", "as_prepared_by_ray"])
def config(request, raw) -> dict:
    return raw if request.param == "as_written" else _prepared(raw)


def _node_types(config: dict) -> dict:
    return config["available_node_types"]


def _worker_types(config: dict) -> dict:
    head = config["head_node_type"]
    return {k: v for k, v in _node_types(config).items() if k != head}


# --------------------------------------------------------------------------- validity


def test_matches_the_schema_shipped_in_the_ray_wheel(raw):
    import jsonschema

    schema = _ray_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    errors = sorted(validator_cls(schema).iter_errors(raw), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_passes_rays_own_offline_validation(raw):
    """Ray's `prepare_config` + `validate_config`: the checks `ray up` runs before any AWS
    call (ray/autoscaler/_private/commands.py: _bootstrap_config)."""
    from ray.autoscaler._private.util import validate_config

    prepared = _prepared(raw)
    validate_config(prepared)  # raises on error
    assert prepared["available_node_types"][prepared["head_node_type"]]["max_workers"] == 0


def test_autoscaler_v2_reads_it(raw):
    """`ray up` in Ray >= 2.50 starts autoscaler v2, which reads the config on the head
    through this class."""
    from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig

    autoscaling = AutoscalingConfig(copy.deepcopy(raw), skip_content_hash=True)
    node_types = autoscaling.get_node_type_configs()
    assert set(node_types) == set(raw["available_node_types"])
    for name, node_type in node_types.items():
        assert node_type.resources == raw["available_node_types"][name]["resources"]


def test_basic_shape(raw):
    assert raw["cluster_name"] == "raytailor"
    provider = raw["provider"]
    assert provider["type"] == "aws"
    assert provider["region"] == "us-west-2"
    zones = [z.strip() for z in provider["availability_zone"].split(",")]
    assert zones and all(z.startswith(provider["region"]) for z in zones)
    assert isinstance(provider["cache_stopped_nodes"], bool)
    assert raw["idle_timeout_minutes"] > 0
    assert "docker" not in raw  # plain AMI, no container
    for node_type in raw["available_node_types"].values():
        assert node_type["node_config"]["ImageId"].startswith("ami-")


# --------------------------------------------------------------------------- security


def _walk(obj, path=()):
    yield path, obj
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _walk(value, path + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _walk(value, path + (i,))


def _world_open_ports(config: dict):
    """(path, rule) for every inbound rule anywhere in the config that opens a port other
    than SSH to the whole internet."""
    bad = []
    for path, node in _walk(config):
        if not (isinstance(node, dict) and "IpPermissions" in node):
            continue
        for i, rule in enumerate(node["IpPermissions"]):
            protocol = str(rule.get("IpProtocol", "-1"))
            lo, hi = rule.get("FromPort", -1), rule.get("ToPort", -1)
            all_ports = protocol in ("-1", "all") or lo in (-1, None)
            cidrs = [r.get("CidrIp", "") for r in rule.get("IpRanges", [])]
            cidrs += [r.get("CidrIpv6", "") for r in rule.get("Ipv6Ranges", [])]
            world = any(c and ipaddress.ip_network(c, strict=False).prefixlen == 0 for c in cidrs)
            if world and (all_ports or not (lo == hi == 22)):
                bad.append((path + ("IpPermissions", i), rule))
    return bad


def _opens_dashboard_to_world(config: dict):
    return [
        (path, rule)
        for path, rule in _world_open_ports(config)
        if str(rule.get("IpProtocol", "-1")) in ("-1", "all")
        or rule.get("FromPort", -1) in (-1, None)
        or rule["FromPort"] <= DASHBOARD_PORT <= rule.get("ToPort", rule["FromPort"])
    ]


def test_the_rule_walker_catches_an_open_dashboard():
    """The security checks below must not pass only because they find nothing."""
    bad = {
        "provider": {
            "security_group": {
                "GroupName": "x",
                "IpPermissions": [
                    {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                     "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
                    {"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 9000,
                     "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
                ],
            }
        }
    }
    assert [p for p, _ in _opens_dashboard_to_world(bad)] == [
        ("provider", "security_group", "IpPermissions", 1)
    ]
    everything = {"IpPermissions": [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}
    assert _opens_dashboard_to_world(everything)
    restricted = {"IpPermissions": [{"IpProtocol": "tcp", "FromPort": 8265, "ToPort": 8265,
                                     "IpRanges": [{"CidrIp": "203.0.113.7/32"}]}]}
    assert not _opens_dashboard_to_world(restricted)


def test_no_port_but_ssh_is_open_to_the_internet(config):
    assert not _opens_dashboard_to_world(config), "port 8265 is open to 0.0.0.0/0 or ::/0"
    assert not _world_open_ports(config), "a non-SSH port is open to 0.0.0.0/0 or ::/0"


def test_nodes_use_a_security_group_that_ray_does_not_create(config):
    """Without SecurityGroupIds, Ray creates `ray-autoscaler-<cluster>` and always adds SSH
    from 0.0.0.0/0 to it (ray/autoscaler/_private/aws/config.py:
    _create_default_ssh_inbound_rules). provider.security_group.IpPermissions only adds rules
    to that. Restricting SSH to one IP needs a group of our own on every node type."""
    for name, node_type in _node_types(config).items():
        groups = node_type["node_config"].get("SecurityGroupIds")
        assert groups and all(g.startswith("sg-") for g in groups), name


def _start_commands(config: dict) -> list[str]:
    return [cmd for key in START_KEYS for cmd in config.get(key, [])]


def test_dashboard_binds_to_localhost_only(config):
    commands = _start_commands(config)
    assert commands
    for cmd in commands:
        assert "0.0.0.0" not in cmd, cmd
        for host in re.findall(r"--dashboard-host[= ](\S+)", cmd):
            assert host in ("127.0.0.1", "localhost"), cmd
    head = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert len(head) == 1
    assert "--head" in head[0]
    assert "--dashboard-host=127.0.0.1" in head[0]  # explicit, not just Ray's default


def test_start_commands_stop_ray_first_and_enable_the_autoscaler(config):
    for key in START_KEYS:
        commands = config[key]
        assert commands[0].strip() == "ray stop", key
        assert any("ray start" in c for c in commands[1:]), key
    (head,) = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    (worker,) = [c for c in config["worker_start_ray_commands"] if "ray start" in c]
    assert "--address=$RAY_HEAD_IP:6379" in worker


# --------------------------------------------------------------------------- resources


def test_head_has_cpus_and_no_gpu(config):
    head = _node_types(config)[config["head_node_type"]]
    assert head["resources"].get("CPU", 0) > 0
    assert head["resources"].get("GPU", None) == 0  # explicit: never autodetected
    assert head.get("max_workers", 0) == 0


def test_workers_declare_gpus_and_cpus(config):
    """A trial that asks only for {"gpu": 0.5} gets 0 CPUs, so every node where trials run
    must offer CPUs as well as GPUs."""
    workers = _worker_types(config)
    assert workers
    for name, node_type in workers.items():
        resources = node_type["resources"]
        assert resources.get("GPU", 0) >= 1, name
        assert resources.get("CPU", 0) > 0, name
        assert node_type.get("min_workers", 0) == 0, name
        assert 0 < node_type["max_workers"] <= config["max_workers"], name


def test_documented_fractional_gpu_example_fits_two_trials_per_gpu(config):
    for name, node_type in _worker_types(config).items():
        resources = node_type["resources"]
        trials_by_gpu = resources["GPU"] // EXAMPLE_TRIAL["GPU"]
        trials_by_cpu = resources["CPU"] // EXAMPLE_TRIAL["CPU"]
        assert trials_by_cpu >= trials_by_gpu, f"{name}: CPUs run out before GPUs"


def test_every_node_has_an_instance_profile_for_s3(config):
    for name, node_type in _node_types(config).items():
        profile = node_type["node_config"].get("IamInstanceProfile", {})
        assert profile.get("Name") or profile.get("Arn"), name


# --------------------------------------------------------------------------- code + setup


def _pin(name: str) -> str:
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith(f"{name}=="):
            return line
    raise AssertionError(f"{name} is not pinned in constraints.txt")


def test_setup_pins_torch_and_matches_constraints(config):
    setup = " ".join(config["setup_commands"])
    assert TORCH_PIN in setup and TORCHVISION_PIN in setup
    assert _pin("torch") == TORCH_PIN and _pin("torchvision") == TORCHVISION_PIN
    ray_pin = _pin("ray")
    assert f'"ray[default]=={ray_pin.split("==")[1]}"' in setup
    assert "-c ~/raytailor/constraints.txt" in setup
    assert "-e ~/raytailor" in setup


def test_syncs_the_local_checkout_without_venv_runs_or_git(config):
    assert config["file_mounts"] == {"~/raytailor": "."}
    excluded = set(config["rsync_exclude"])
    assert {".git", ".venv"} <= excluded
    assert excluded & {"runs", "/runs"}
    assert ".gitignore" in config["rsync_filter"]


def test_gpu_workers_fail_setup_without_cuda(config):
    assert any("torch.cuda.is_available()" in c for c in config["worker_setup_commands"])
