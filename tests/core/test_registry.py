"""The plugin registry: discovery, provenance, collisions and errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import attrs
import pytest

from llm_surgeon.errors import ConfigError, PluginError
from llm_surgeon.registry import Kind, Registry, get_registry, hookimpl


class _Thing:
    """A registered thing."""


@attrs.frozen
class _Options:
    rank: int = 1


class _Provider:
    def __init__(self, *names: str) -> None:
        self.names = names

    @hookimpl
    def register_curvatures(self, register):
        for name in self.names:
            register(name, _Thing, config=_Options)


def _fake_distribution(root: Path, dist: str, module: str, source: str) -> None:
    """A module plus a ``.dist-info`` declaring it under the ``llm_surgeon`` entry-point group."""
    (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[llm_surgeon]\n{module} = {module}\n", encoding="utf-8")


def test_records_know_their_provider():
    reg = Registry()
    reg.add_plugin(_Provider("alpha", "beta"), "prov", "some-dist", "0.3")
    record = reg.get(Kind.CURVATURE, "alpha")
    assert (record.plugin, record.distribution, record.version) == ("prov", "some-dist", "0.3")
    assert record.description == "A registered thing."
    assert reg.names(Kind.CURVATURE) == ["alpha", "beta"]
    assert record.make_config(rank=3) == _Options(rank=3)


def test_duplicate_name_names_both_providers():
    reg = Registry()
    reg.add_plugin(_Provider("kfac"), "first", "dist-one", "1")
    with pytest.raises(PluginError) as err:
        reg.add_plugin(_Provider("kfac"), "second", "dist-two", "1")
    message = str(err.value)
    for part in ("kfac", "first", "dist-one", "second", "dist-two"):
        assert part in message
    # The first registration is kept, nothing of the second remains.
    assert reg.get(Kind.CURVATURE, "kfac").plugin == "first"
    assert not reg.plugin_manager.has_plugin("second")


def test_duplicate_plugin_name_is_an_error():
    reg = Registry()
    reg.add_plugin(_Provider("a"), "same", "dist-one")
    with pytest.raises(PluginError, match="dist-one.*dist-two"):
        reg.add_plugin(_Provider("b"), "same", "dist-two")


def test_plugin_raising_during_registration():
    class Broken:
        @hookimpl
        def register_methods(self, register):
            raise RuntimeError("boom")

    reg = Registry()
    with pytest.raises(PluginError, match=r"'broken'.*broken-dist.*boom"):
        reg.add_plugin(Broken(), "broken", "broken-dist", "0.1")
    assert not reg.plugin_manager.has_plugin("broken")


def test_invalid_hook_implementation_is_a_plugin_error():
    class WrongArgs:
        @hookimpl
        def register_methods(self, register, extra):
            pass

    with pytest.raises(PluginError, match="wrong-args.*bad-dist"):
        Registry().add_plugin(WrongArgs(), "wrong-args", "bad-dist")


def test_unknown_hook_is_a_plugin_error():
    class Misspelled:
        @hookimpl
        def register_curvature(self, register):  # missing "s"
            pass

    with pytest.raises(PluginError, match="misspelled.*typo-dist"):
        Registry().add_plugin(Misspelled(), "misspelled", "typo-dist")


def test_config_must_be_attrs():
    class BadConfig:
        @hookimpl
        def register_structures(self, register):
            register("thing", _Thing, config=dict)

    with pytest.raises(PluginError, match="attrs"):
        Registry().add_plugin(BadConfig(), "bad-config", "d")


def test_did_you_mean():
    reg = Registry()
    reg.add_plugin(_Provider("kfac", "nearest-kfac", "identity"), "p", "d")
    with pytest.raises(ConfigError, match=r"unknown curvature 'kfca'; did you mean 'kfac'\?"):
        reg.get(Kind.CURVATURE, "kfca")
    with pytest.raises(ConfigError, match="available: identity, kfac, nearest-kfac"):
        reg.get("curvature", "zzz")


def test_unknown_options_are_config_errors():
    reg = Registry()
    reg.add_plugin(_Provider("kfac"), "p", "d")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['ranks'\].*valid: \['rank'\]"):
        reg.get(Kind.CURVATURE, "kfac").make_config(ranks=2)


def test_remove_plugin_forgets_its_items():
    reg = Registry()
    reg.add_plugin(_Provider("x"), "p", "d")
    reg.remove_plugin("p")
    assert reg.names(Kind.CURVATURE) == []


def test_builtins_load_through_entry_points(fresh_registry):
    reg = get_registry()
    assert get_registry() is reg  # loaded once
    record = reg.get(Kind.ARCHITECTURE, "llama")
    assert record.distribution == "llm-surgeon"
    assert record.plugin == "llm_surgeon.plugins.architectures"  # module paths cannot collide
    assert {"llama", "mistral", "qwen2", "opt"} <= set(reg.names(Kind.ARCHITECTURE))


def test_plugin_failing_to_import(tmp_path, monkeypatch, fresh_registry):
    _fake_distribution(tmp_path, "broken-plugin", "broken_plugin_mod", "raise ImportError('missing dependency xyz')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as err:
        get_registry()
    message = str(err.value)
    assert "broken_plugin_mod" in message and "broken-plugin" in message and "xyz" in message


def test_third_party_duplicate_of_builtin(tmp_path, monkeypatch, fresh_registry):
    _fake_distribution(tmp_path, "shadow-plugin", "shadow_mod", """
        from llm_surgeon.registry import hookimpl

        class Adapter:
            pass

        @hookimpl
        def register_architectures(register):
            register("llama", Adapter)
        """)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=r"'llama' is registered twice") as err:
        get_registry()
    assert "(llm-surgeon)" in str(err.value) and "(shadow-plugin)" in str(err.value)


def test_load_plugins_env_limits_distributions(tmp_path, monkeypatch, fresh_registry):
    _fake_distribution(tmp_path, "broken-plugin", "broken_plugin_mod2", "raise ImportError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("LLM_SURGEON_LOAD_PLUGINS", "some-other-dist")
    reg = get_registry()  # the broken distribution is not loaded at all
    assert "llama" in reg.names(Kind.ARCHITECTURE)
