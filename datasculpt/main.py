"""Command line: ``python -m datasculpt.main ctx_len=16384 input=...`` (a Hydra app).

Exit codes: 0 success, 2 bad config or unusable input (one line on stderr), 1 internal failure.
Hydra itself reports a bad override with a multi-line message and exit code 1, so overrides
are composed once up front with Hydra's Compose API to turn those mistakes into one line too.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from datasculpt.config import register_configs, validate
from datasculpt.errors import UserError

CONFIG_MODULE = "datasculpt.conf"  # an installed build maps conf/ to this package
log = logging.getLogger("datasculpt")


def source_config_dir() -> Path | None:
    """``conf/`` of the source checkout this module runs from, if it does: a checkout has no
    ``datasculpt.conf`` package until it is installed, and must run all the same."""
    root = Path(__file__).resolve().parent.parent
    conf = root / "conf"
    if (root / "pyproject.toml").is_file() and (conf / "config.yaml").is_file():
        return conf
    return None


_SOURCE_CONF = source_config_dir()
CONFIG_PATH = str(_SOURCE_CONF) if _SOURCE_CONF else f"pkg://{CONFIG_MODULE}"

register_configs()


def _fail(message: str) -> None:
    print(f"datasculpt: error: {message}", file=sys.stderr)
    sys.exit(2)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0]


def _composition_error(exc: BaseException) -> str:
    """Hydra's multi-line composition errors, folded into one line that still says what to do."""
    message = _first_line(exc).rstrip(".")
    text = str(exc)
    if "Available options in" in text:
        options = [ln.strip() for ln in text.split("Available options in")[1].splitlines()[1:]]
        options = [o for o in options if o and not o.startswith(("Config search", "provider="))]
        message += f" (available: {', '.join(options)})"
    if exc.__cause__ is not None:
        message += f": {_first_line(exc.__cause__)}"
    return message


def precheck(argv: list[str]) -> None:
    """Compose and validate the config for the first point of any sweep, before Hydra runs."""
    from hydra import compose, initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in argv if not a.startswith("-") and "=" in a]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception as exc:
        _fail(f"cannot parse overrides: {_first_line(exc)}")
    points = []
    for ov in parsed:
        if ov.get_key_element().lstrip("+~").startswith("hydra"):
            continue
        if ov.is_sweep_override():
            values = list(ov.sweep_string_iterator())
        else:
            values = [ov.get_value_element_as_str()]
        points.append([f"{ov.get_key_element()}={v}" for v in values])
    first = [p[0] for p in points]
    try:
        GlobalHydra.instance().clear()
        init = (initialize_config_dir(config_dir=str(_SOURCE_CONF), version_base="1.3")
                if _SOURCE_CONF else
                initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"))
        with init:
            for i, choices in enumerate(points):  # every value of every swept key, one at a time
                for choice in choices:
                    overrides = first[:i] + [choice] + first[i + 1 :]
                    validate(compose(config_name="config", overrides=overrides))
    except UserError as exc:
        _fail(_first_line(exc))
    except Exception as exc:  # Hydra/OmegaConf composition errors: unknown key, bad group option
        _fail(_composition_error(exc))
    finally:
        GlobalHydra.instance().clear()


@hydra.main(config_path=CONFIG_PATH, config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> None:
    from datasculpt.pipeline import run

    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # it logs every CPU probe
    try:
        output_dir = cfg.output_dir or HydraConfig.get().runtime.output_dir
        run(cfg, output_dir=output_dir)
    except UserError as exc:
        _fail(_first_line(exc))
    except KeyboardInterrupt:
        raise
    except Exception:
        log.error("internal failure:\n%s", traceback.format_exc())
        print("datasculpt: internal error (traceback above / in the run log)", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    if not any(a in ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info") for a in sys.argv):
        precheck(sys.argv[1:])
    app()


if __name__ == "__main__":
    main()
