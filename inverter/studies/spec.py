"""A study as a value and a file: a grid over models x nodes x images x settings (and presets).

    name = "lambda_tv x layer"
    store = "study.sqlite"            # relative to the spec's folder
    models = ["zoo:vgg16_hed"]         # .onnx paths, or zoo:NAME (exported once into the store's folder)
    nodes = ["conv1_2", "conv2_2"]
    images = ["demo"]                  # image paths, or demo (Grace Hopper, shipped with matplotlib)
    size = 128                         # optional: the models' input side
    batch = 8                          # runs of one model and node go as batches of at most this many
    preset = "default"                 # optional
    [settings]                         # InversionConfig fields for every run
    iterations = 150
    [grid]                             # one axis per field (or preset): every combination is a run
    lambda_tv = [1e-7, 1e-6, 1e-5]

`check` refuses a spec with any error (unknown key, node, file, bad value) whole, before any work,
in one line naming the entry; `expand` lists its runs; `chunks` groups them into batches.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from converters.errors import UserError, first_line
from inverter.config import ConfigError, InversionConfig
from inverter.methods.inversion import PER_RUN_FIELDS

CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(InversionConfig))
KEYS = ("name", "store", "models", "nodes", "images", "size", "batch", "preset", "settings", "grid")
EXECUTION_FIELDS = ("device",)  # where a run goes is the engine's choice (--gpus-per-run), not the run's identity


class SpecError(ConfigError):
    """A study spec with an error: one line naming the entry."""


@dataclass
class Study:
    models: list[str]
    nodes: list[str]
    images: list[str]
    store: Path = Path("study.sqlite")
    name: str = "study"
    size: int | None = None
    batch: int = 8
    preset: str | None = None
    settings: dict = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    root: Path = Path(".")  # relative paths in the spec are relative to this folder
    source: str = "study"  # how errors name the spec (its file)

    def path(self, entry: str) -> Path:
        p = Path(entry).expanduser()
        return p if p.is_absolute() else self.root / p

    @property
    def store_path(self) -> Path:
        return self.path(str(self.store))


@dataclass
class RunItem:
    """One run of the study: what it inverts, with which settings, and its key in the store."""

    key: str
    model: str  # path of the .onnx file
    model_sha256: str
    node: str
    image: str
    image_sha256: str
    size: int | None
    preset: str | None
    config: dict  # InversionConfig.to_dict()

    def batch_group(self) -> tuple:
        """Runs with equal groups can share a batch (they differ only in image, seed, lr, lambdas)."""
        rest = {k: v for k, v in self.config.items() if k not in PER_RUN_FIELDS}
        return (self.model_sha256, self.model, self.node, self.size, json.dumps(rest, sort_keys=True))


def load_spec(path: str | Path) -> Study:
    """Read a TOML spec (the file's folder is the root of its relative paths)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"study spec not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid TOML: {first_line(exc)}") from None
    return from_dict(data, root=path.parent, source=str(path))


def from_dict(data: dict, root: Path = Path("."), source: str = "study") -> Study:
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise SpecError(f"{source}: unknown key {unknown[0]!r}; a spec takes {', '.join(KEYS)}")
    for key in ("models", "nodes", "images"):
        value = data.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise SpecError(f"{source}: {key} must be a non-empty list of names, not {value!r}")
    for key in ("settings", "grid"):
        if not isinstance(data.get(key, {}), dict):
            raise SpecError(f"{source}: [{key}] must be a table")
    batch = data.get("batch", 8)
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise SpecError(f"{source}: batch must be a whole number >= 1, not {batch!r}")
    size = data.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 4096):
        raise SpecError(f"{source}: size must be a whole number of pixels in [8, 4096], not {size!r}")
    return Study(models=list(data["models"]), nodes=list(data["nodes"]), images=list(data["images"]),
                 store=Path(data.get("store", "study.sqlite")), name=str(data.get("name", Path(source).stem)),
                 size=size, batch=batch, preset=data.get("preset"), settings=dict(data.get("settings", {})),
                 grid={k: v for k, v in data.get("grid", {}).items()}, root=Path(root), source=source)


def file_sha256(path: str | Path, _cache: dict = {}) -> str:  # noqa: B006 (a per-process cache on purpose)
    p = Path(path)
    stat = p.stat()
    key = (str(p.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _cache:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _cache[key] = h.hexdigest()
    return _cache[key]


def run_key(model_sha: str, node: str, image_sha: str, size: int | None, config: dict) -> str:
    identity = {k: v for k, v in config.items() if k not in EXECUTION_FIELDS}
    text = json.dumps([model_sha, node, image_sha, size, identity], sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _configs(study: Study) -> list[tuple[str | None, InversionConfig]]:
    """Every combination of the grid's axes, over the preset and settings: (preset name, config)."""
    from inverter.presets import preset

    for key, values in study.grid.items():
        if key != "preset" and key not in CONFIG_FIELDS:
            raise SpecError(f"{study.source}: grid.{key}: unknown setting; settings are {', '.join(CONFIG_FIELDS)}")
        if not isinstance(values, list) or not values:
            raise SpecError(f"{study.source}: grid.{key} must be a non-empty list, not {values!r}")
    for key in study.settings:
        if key not in CONFIG_FIELDS:
            raise SpecError(f"{study.source}: settings.{key}: unknown setting; settings are {', '.join(CONFIG_FIELDS)}")
    axes = list(study.grid.items())
    out = []
    for combo in itertools.product(*(values for _, values in axes)):
        point = dict(zip((k for k, _ in axes), combo))
        name = point.pop("preset", study.preset)
        where = ", ".join(f"grid.{k} = {v!r}" for k, v in point.items()) or "settings"
        try:
            base = preset(name)[0] if name else InversionConfig()
        except ConfigError as exc:
            raise SpecError(f"{study.source}: preset {name!r}: {exc}") from None
        values = {**study.settings, **point}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        for k, v in values.items():  # TOML has no int/float distinction for 1e-3 vs 1: a float field takes ints
            if isinstance(getattr(base, k), float) and isinstance(v, int) and not isinstance(v, bool):
                values[k] = float(v)
            if isinstance(v, float) and not math.isfinite(v):
                raise SpecError(f"{study.source}: {where}: {k} must be finite")
        try:
            config = base.replace(**values)
        except (ConfigError, TypeError) as exc:
            raise SpecError(f"{study.source}: {where}: {first_line(exc)}") from None
        out.append((name, config))
    return out


def resolve_model(study: Study, entry: str) -> Path:
    """A path, or zoo:NAME exported once (seeded weights or the shipped ones) next to the store."""
    if entry.startswith("zoo:"):
        from models import export

        name = entry[4:]
        target = study.store_path.parent / "models" / f"{name}{'_' + str(study.size) if study.size else ''}.onnx"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                export(name, target, size=study.size)
            except (UserError, KeyError, ValueError) as exc:
                raise SpecError(f"{study.source}: models entry {entry!r}: {first_line(exc)}") from None
        return target
    path = study.path(entry)
    if not path.is_file():
        raise SpecError(f"{study.source}: models entry {entry!r}: file not found ({path})")
    return path


def resolve_image(study: Study, entry: str) -> Path:
    if entry == "demo":
        from inverter.io.images import demo_image

        return demo_image()
    path = study.path(entry)
    if not path.is_file():
        raise SpecError(f"{study.source}: images entry {entry!r}: file not found ({path})")
    return path


def check(study: Study, load_model=None) -> list[RunItem]:
    """Every error of the spec before any work (files, settings, each node on each model); the runs."""
    from converters import load
    from inverter.io.images import load_image

    configs = _configs(study)
    images = [resolve_image(study, e) for e in study.images]
    models = [resolve_model(study, e) for e in study.models]
    side = (study.size, study.size) if study.size else None
    items = []
    for entry, path in zip(study.models, models):
        try:
            network = (load_model or load)(path, size=side)
        except UserError as exc:
            raise SpecError(f"{study.source}: models entry {entry!r}: {first_line(exc)}") from None
        for i, node in enumerate(study.nodes):
            try:
                network.resolve(node)
            except UserError as exc:
                raise SpecError(f"{study.source}: nodes[{i}] = {node!r} on {entry}: {first_line(exc)}") from None
        for name, image in zip(study.images, images):
            try:
                load_image(image, network.input_spec.size)  # unreadable images fail now, not mid-study
            except UserError as exc:
                raise SpecError(f"{study.source}: images entry {name!r}: {first_line(exc)}") from None
        model_sha = file_sha256(path)
        for node in study.nodes:
            for image in images:
                image_sha = file_sha256(image)
                for preset_name, config in configs:
                    d = config.to_dict()
                    items.append(RunItem(run_key(model_sha, node, image_sha, study.size, d), str(path), model_sha,
                                         node, str(image), image_sha, study.size, preset_name, d))
    return list({it.key: it for it in items}.values())  # a grid that names one run twice runs it once


def chunks(items: list[RunItem], batch: int, workers: int = 1) -> list[list[RunItem]]:
    """Batches of runs that may share one `invert` call, at most `batch` each, split further so that
    every worker has work when there are few groups."""
    groups: dict[tuple, list[RunItem]] = {}
    for it in items:
        groups.setdefault(it.batch_group(), []).append(it)
    total = len(items)
    size = max(1, min(batch, math.ceil(total / max(workers, 1)))) if total else batch
    out = []
    for group in groups.values():
        n = math.ceil(len(group) / size)
        step = math.ceil(len(group) / n)  # even pieces: 5 runs at size 4 are 3 + 2, not 4 + 1
        out += [group[i : i + step] for i in range(0, len(group), step)]
    return out
