"""Conformance over every registered merge method and sparsifier (scikit-learn's
``check_estimator`` idea): iterating the registry, so a new class is covered automatically."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from family_fixtures import write_family

from tadrop import registry
from tadrop.config import validate_config
from tadrop.merge import run_merge
from tadrop.params import ParameterError, param_specs, validate_params
from tadrop.task_vectors import load_family

CLASSES = [
    *(("method", name, cls) for name, cls in registry.METHODS.items()),
    *(("sparsifier", name, cls) for name, cls in registry.SPARSIFIERS.items()),
]
IDS = [f"{kind}-{name}" for kind, name, _ in CLASSES]
FLOAT_PARAMS = [
    (kind, name, cls, key)
    for kind, name, cls in CLASSES
    for key, spec in param_specs(cls).items()
    if spec.kind == "float"
]
# Where each class's hand-computed case lives (tests/test_merge_methods.py, test_sparsify.py).
HAND_COMPUTED = {
    "averaging": "test_merge_family.py::test_averaging_equals_mean_of_models",
    "task_arithmetic": "test_merge_methods.py::test_task_arithmetic_hand_computed",
    "ties": "test_merge_methods.py::test_ties_hand_computed",
    "emr": "test_merge_methods.py::test_emr_hand_computed",
    "tadrop": "test_sparsify.py::test_tadrop_hand_computed",
    "magnitude": "test_sparsify.py::test_magnitude_hand_computed",
    "dare": "test_sparsify.py::test_dare_rate_and_rescale",
    "della": "test_conformance.py::test_della_hand_computed",
    "breadcrumbs": "test_sparsify.py::test_breadcrumbs_drops_outliers_and_small",
}


def _config_for(kind: str, name: str, params: dict, folder: Path) -> dict:
    models = {"task0": str(folder / "task0"), "task1": str(folder / "task1")}
    data = {"base": str(folder / "base"), "models": models, "method": "task_arithmetic"}
    if kind == "method":
        data.update(method=name, method_params=params)
    else:
        data.update(sparsifier=name, sparsifier_params=params)
    return data


@pytest.fixture(scope="module")
def family_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("conformance")
    shapes = {"logit_scale": (), "one": (1,), "tiny": (2,), "w": (4, 3)}
    write_family(root, 2, with_buffer=False, shapes=shapes)
    return root


@pytest.mark.parametrize(("kind", "name", "cls"), CLASSES, ids=IDS)
def test_init_only_stores_its_arguments(kind: str, name: str, cls: type) -> None:
    """No validation and no derived attribute in __init__ (NaN everywhere is stored as is)."""
    params = {
        key: (math.nan if spec.kind == "float" else spec.default)
        for key, spec in param_specs(cls).items()
    }
    instance = cls(**params)
    assert vars(instance).keys() == params.keys()
    for key, value in params.items():
        stored = getattr(instance, key)
        assert stored is value or stored == value


@pytest.mark.parametrize(("kind", "name", "cls"), CLASSES, ids=IDS)
def test_get_params_round_trips(kind: str, name: str, cls: type) -> None:
    instance = cls()
    rebuilt = cls(**instance.get_params())
    assert rebuilt.get_params() == instance.get_params()
    validate_params(rebuilt)


@pytest.mark.parametrize(("kind", "name", "cls"), CLASSES, ids=IDS)
def test_config_from_get_params_validates(kind, name, cls, family_dir: Path) -> None:
    """What the dashboard's YAML export writes (a run's get_params) is a valid config."""
    data = _config_for(kind, name, cls().get_params(), family_dir)
    config = validate_config(data, folder=family_dir)
    built = config.build()
    assert (built[0] if kind == "method" else built[1]).get_params() == cls().get_params()


@pytest.mark.parametrize(("kind", "name", "cls", "key"), FLOAT_PARAMS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_float_is_refused(kind, name, cls, key, value, family_dir: Path) -> None:
    with pytest.raises(ParameterError) as raised:
        registry.construct(kind, cls, {key: value})
    assert raised.value.key == key and "finite" in str(raised.value)
    data = _config_for(kind, name, {key: value}, family_dir)
    with pytest.raises(
        ValueError, match=rf"{kind if kind == 'sparsifier' else 'method'}_params\.{key}: .*finite"
    ):
        validate_config(data, folder=family_dir)


@pytest.mark.parametrize("sparsifier", registry.sparsifier_names())
@pytest.mark.parametrize("method", list(registry.METHODS))
def test_zero_d_one_element_and_tiny_tensors(
    method: str, sparsifier: str, family_dir: Path
) -> None:
    """CLIP's 0-d logit_scale, a 1-element and a 2-element tensor merge under every pair."""
    family = load_family(family_dir / "base", {t: family_dir / t for t in ("task0", "task1")})
    merge, sparse = registry.build_merge(method, sparsifier)
    result = run_merge(family, merge, sparse, device="cpu")
    for tensor_name in family.tensor_names:
        merged = result.merged_tensor("task0", tensor_name)
        assert merged.shape == family.base.shape(tensor_name)
        assert bool(torch.isfinite(merged).all())


def test_every_class_has_a_hand_computed_case() -> None:
    assert set(HAND_COMPUTED) == set(registry.METHODS) | set(registry.SPARSIFIERS)
    tests = Path(__file__).parent
    for reference in HAND_COMPUTED.values():
        file, function = reference.split("::")
        assert f"def {function}(" in (tests / file).read_text(), reference


def test_della_hand_computed() -> None:
    """n = 5, density 0.5, epsilon 0.2: p_keep(rank) = 0.4 + 0.2 * rank / 4; kept entries
    are divided by their p_keep."""
    from tadrop.sparsify import DELLA

    tau = torch.tensor([0.3, -0.1, 0.5, 0.2, -0.4])  # ranks by |tau|: 2, 0, 4, 1, 3
    sparsifier = DELLA(density=0.5, epsilon=0.2, seed=0)
    expected_p = torch.tensor([0.5, 0.4, 0.6, 0.45, 0.55])
    assert torch.allclose(sparsifier.keep_probability(tau), expected_p)
    keep = torch.tensor([True, False, True, False, True])
    applied = sparsifier.apply(tau, keep)
    assert torch.allclose(applied, torch.tensor([0.3 / 0.5, 0.0, 0.5 / 0.6, 0.0, -0.4 / 0.55]))


@pytest.mark.parametrize(("kind", "name", "cls", "key"), FLOAT_PARAMS)
def test_non_finite_is_refused_when_built_from_python(kind, name, cls, key, family_dir) -> None:
    """No registry, no config: run_merge itself refuses the instance, naming the key."""
    family = load_family(family_dir / "base", {t: family_dir / t for t in ("task0", "task1")})
    instance = cls(**{key: math.nan})
    method, sparsifier = (
        (instance, None) if kind == "method" else (registry.METHODS["ties"](), instance)
    )
    with pytest.raises(ParameterError, match=rf"{key}: must be a finite number") as raised:
        run_merge(family, method, sparsifier, device="cpu")
    assert raised.value.key == key


def test_a_new_class_gets_the_checks_from_its_signature() -> None:
    """The spec is read from the constructor: no per-field code in a new class."""
    from tadrop.merge import MergeMethod
    from tadrop.params import FRACTION, Range

    class Toy(MergeMethod):
        param_ranges = {"share": FRACTION}

        def __init__(
            self,
            share: float = 0.5,
            steps: int = 3,
            flag: bool = False,
            weights: dict[str, float] | None = None,
        ) -> None:
            self.share = share
            self.steps = steps
            self.flag = flag
            self.weights = weights

    specs = param_specs(Toy)
    assert {name: spec.kind for name, spec in specs.items()} == {
        "share": "float",
        "steps": "int",
        "flag": "bool",
        "weights": "weights",
    }
    assert specs["share"].range == FRACTION and str(FRACTION) == "(0, 1]"
    assert str(Range(0, 1, high_open=True)) == "[0, 1)" and str(Range(0)) == ">= 0"
    for params, key, fragment in [
        ({"share": math.nan}, "share", "must be a finite number in (0, 1]"),
        ({"share": 1.5}, "share", "share=1.5 is outside (0, 1]"),
        ({"steps": 2.5}, "steps", "expected a whole number (default 3), got 2.5"),
        ({"flag": 1}, "flag", "expected true or false"),
        ({"weights": {"t": math.inf}}, "weights", "the weight of task 't' must be a finite"),
        ({"weights": [1.0]}, "weights", "expected a mapping task -> number"),
    ]:
        with pytest.raises(ParameterError, match=re.escape(fragment)) as raised:
            validate_params(Toy(**params))
        assert raised.value.key == key
    validate_params(Toy(share=1, steps=0, flag=True, weights={"t": 2}))
