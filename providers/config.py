"""Configuration: built-in defaults, then an optional TOML file, then environment variables.

Model names, base URLs, keys, prices and timeouts live here and nowhere else, so a provider's API change is a
configuration change. The order (defaults < file < environment) follows the twelve-factor convention: the
environment of a deployment wins over files checked into it.
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from providers import secrets

Tier = Literal["premium", "realtime", "local"]
Kind = Literal["gemini", "perplexity", "llamacpp"]
Depth = Literal["quick", "standard", "deep"]
RoutingMode = Literal["intelligent", "legacy", "shadow"]

DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which file or variable and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Strict):
    input_per_m: float = Field(ge=0)
    output_per_m: float = Field(ge=0)
    request_fee_usd: float = Field(default=0.0, ge=0)
    # Search grounding per grounded prompt (Google Search on Gemini): what the premium model needs to answer
    # fresh-fact questions at all, so the all-premium baseline of such a question includes it.
    grounding_fee_usd: float = Field(default=0.0, ge=0)
    # Gemini bills the whole request at a higher rate once the prompt passes a size.
    long_context_tokens: int | None = None
    long_input_per_m: float | None = None
    long_output_per_m: float | None = None
    effective_from: dt.date | None = None
    source: str = ""
    as_of: str = ""

    def cost_usd(self, input_tokens: int, output_tokens: int, requests: int = 1) -> float:
        """Price one call: thinking tokens must already be counted in ``output_tokens``."""
        in_rate, out_rate = self.input_per_m, self.output_per_m
        if self.long_context_tokens is not None and input_tokens > self.long_context_tokens:
            in_rate = self.long_input_per_m if self.long_input_per_m is not None else in_rate
            out_rate = self.long_output_per_m if self.long_output_per_m is not None else out_rate
        return (input_tokens * in_rate + output_tokens * out_rate) / 1_000_000 + requests * self.request_fee_usd


class ProviderSettings(_Strict):
    name: str
    tier: Tier
    kind: Kind
    model: str
    api_key: SecretStr | None = None
    base_url: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    # Hedge delay until enough latency samples exist; None: [resilience.hedge] default_after_s.
    hedge_after_s: float | None = Field(default=None, gt=0)
    # A thinking model bills hidden reasoning tokens as output; cost estimates must include them.
    thinks: bool = False
    # Whether answers carry web citations (search-backed providers).
    cites: bool = False
    # Local tier only.
    model_path: str | None = None
    max_tokens: int = Field(default=256, gt=0)
    n_ctx: int = Field(default=2048, gt=0)
    # Local tier only: calls that may wait for the one model of the process; more are refused at once.
    queue_limit: int = Field(default=4, ge=0)
    # Local tier only: this model's accuracy on the labelled light jobs, as bench/local.py --write PATH measures it
    # (nodes/policy/local_adequacy.py); None: the measurement shipped for the embedded model.
    adequacy_path: str | None = None


class Deadlines(_Strict):
    quick: float = Field(gt=0)
    standard: float = Field(gt=0)
    deep: float = Field(gt=0)

    def for_depth(self, depth: Depth) -> float:
        return float(getattr(self, depth))


# The needs a tier can fail (nodes/route.py): a light text job is within every tier's reach.
LossClass = Literal["fresh", "complex", "moderate", "light", "research"]


def _default_wrong_answer_costs() -> dict[LossClass, float]:
    # light: a wrong light job is re-asked (about one premium call); research: fresh facts and deep reasoning.
    return {"fresh": 0.05, "complex": 0.05, "moderate": 0.02, "light": 0.002, "research": 0.05}


class RoutingSettings(_Strict):
    mode: RoutingMode = "intelligent"
    expected_output_tokens: dict[str, int]
    expected_thinking_tokens: dict[str, int]
    fresh_threshold: float = Field(default=0.5, ge=0, le=1)
    # A classification whose most likely need has less than 1 - uncertainty_band probability is "uncertain";
    # route says so in its reasons (its expected-cost rule is the same either way).
    uncertainty_band: float = Field(default=0.15, ge=0, le=0.5)
    # What one inadequate answer costs, by the need it failed (fresh, complex, moderate): the price the
    # operator puts on avoiding it. Route minimises price + P(inadequate) x this.
    wrong_answer_cost_usd: dict[LossClass, float] = Field(default_factory=_default_wrong_answer_costs)
    # Cost-sensitive requests weigh a wrong answer by this factor: the caller trades quality for price.
    cost_sensitive_loss_factor: float = Field(default=0.25, ge=0, le=1)
    # Tasks the local model can do at moderate complexity (besides every simple job without fresh facts).
    local_moderate_tasks: list[str] = Field(default_factory=list)
    # Share of complex jobs (without fresh facts) the realtime tier still serves: a general model with search
    # but without deep reasoning. It makes realtime the better stand-in when premium fails.
    realtime_complex_adequacy: float = Field(default=0.25, ge=0, le=1)
    # Share (0-100) of callers, by a stable hash of their key, who get intelligent routing.
    rollout_percent: float = Field(default=100.0, ge=0, le=100)


class SourceTable(_Strict):
    scores: dict[str, float]
    domains: dict[str, list[str]]

    def category(self, host: str) -> str:
        """Return the category of a host: the longest matching domain suffix wins."""
        host = host.lower().rstrip(".").removeprefix("www.")
        best, best_len = "unknown", -1
        for category, domains in self.domains.items():
            for domain in domains:
                if (host == domain or host.endswith("." + domain)) and len(domain) > best_len:
                    best, best_len = category, len(domain)
        return best

    def score(self, host: str) -> float:
        return self.scores.get(self.category(host), self.scores.get("unknown", 0.5))


FACTORS = ("model_certainty", "source_quality", "cross_validation", "historical_accuracy")


class ConfidenceSettings(_Strict):
    """How confidence is combined, calibrated and acted on (nodes/policy/confidence.py, nodes/policy/calibration.py)."""

    # Base weights of the factors; the weights of the factors measured on an answer are renormalised to sum 1.
    weights: dict[str, float] = Field(
        default_factory=lambda: {
            "model_certainty": 0.30,
            "source_quality": 0.25,
            "cross_validation": 0.30,
            "historical_accuracy": 0.15,
        }
    )
    # The cascade: a first answer whose calibrated confidence is below this gets a second provider's
    # independent answer (within deadline and budget). 0 turns the cascade off.
    escalate_below: float = Field(default=0.75, ge=0, le=1)
    # Do not start an escalation with less time than this left before the request's deadline.
    min_time_left_s: float = Field(default=5.0, ge=0)
    # Cross-check agreement below which the two answers disagree, and the better-supported one is served.
    disagree_below: float = Field(default=0.5, ge=0, le=1)
    # Calibration (nodes/policy/calibration.py): uncalibrated (the raw combination, labelled so) before min
    # outcomes of both kinds; then the stage with the lowest cross-validated log-loss, ridge-penalised.
    calibration_min_outcomes: int = Field(default=20, ge=2)
    calibration_ridge: float = Field(default=1.0, gt=0)
    # The review gate (nodes/policy/conformal.py): error <= review_alpha among auto-accepted answers with
    # probability >= 1 - review_delta, per provider, once enough outcomes exist.
    review_alpha: float = Field(default=0.1, gt=0, lt=1)
    review_delta: float = Field(default=0.1, gt=0, lt=1)
    # Degenerate output (nodes/policy/degenerate.py: echo, loops, truncation, wrong language, no substance)
    # caps model certainty and the confidence at this.
    degenerate_cap: float = Field(default=0.3, ge=0, le=1)
    # Historical accuracy: how many outcomes the provider's all-task record counts as, for one task's prior.
    history_prior_strength: float = Field(default=4.0, ge=0)

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(FACTORS))
        if unknown:
            raise ValueError(f"unknown factor(s) {', '.join(unknown)}; known: {', '.join(FACTORS)}")
        if any(w < 0 for w in value.values()):
            raise ValueError("factor weights must not be negative")
        return value


class RetrySettings(_Strict):
    """Same-provider retries of errors whose disposition is ``retry`` (providers/errors.py)."""

    max_retries: int = Field(default=2, ge=0)  # per provider and request, after the first attempt
    # Full-jitter exponential backoff when the server gives no Retry-After: uniform(0, min(max, base x 2^n)).
    base_backoff_s: float = Field(default=0.2, ge=0)
    max_backoff_s: float = Field(default=2.0, ge=0)
    # The longest wait (Retry-After or backoff) worth spending on the same provider; longer: next provider.
    max_wait_s: float = Field(default=2.0, ge=0)
    # Retries on a provider within the breaker window may not exceed this share of its successes there.
    budget_ratio: float = Field(default=0.5, ge=0)
    # An attempt is not worth starting (nor a wait worth taking) with less time than this left.
    min_attempt_s: float = Field(default=0.5, ge=0)
    # With fallbacks left in the chain, one attempt gets at most this share of the time left.
    attempt_share: float = Field(default=0.6, gt=0, le=1)


class BreakerSettings(_Strict):
    """Circuit breakers per provider (providers/resilience/)."""

    failure_threshold: int = Field(default=8, ge=1)  # consecutive failures that open the circuit
    failure_rate: float = Field(default=0.5, gt=0, le=1)  # or this failure share in the window ...
    window_s: float = Field(default=60.0, gt=0)
    min_calls: int = Field(default=20, ge=1)  # ... once it holds this many calls
    open_s: float = Field(default=30.0, gt=0)  # open this long, then one half-open probe
    probe_timeout_s: float = Field(default=60.0, gt=0)
    latency_samples: int = Field(default=200, ge=1)


class HedgeSettings(_Strict):
    """Hedged requests: start the next provider when an attempt is slower than its provider usually is."""

    enabled: bool = True
    quantile: float = Field(default=0.95, gt=0, lt=1)  # of the provider's recent successful latencies
    min_samples: int = Field(default=20, ge=1)  # fewer samples: default_after_s
    default_after_s: float = Field(default=2.0, gt=0)
    min_after_s: float = Field(default=0.25, ge=0)  # floor, so a very fast provider is not hedged on jitter
    # The threshold is robust (median + mad_k x scaled MAD of successful latencies), so slow answers cannot
    # push it past the cap and switch hedging off; a hang never completes and is not a sample at all.
    max_after_s: float = Field(default=5.0, gt=0)
    mad_k: float = Field(default=3.0, ge=0)
    # Token bucket of hedges for a cold process or a quiet provider, on top of the spend ratio.
    burst_hedges: float = Field(default=3.0, ge=0)
    burst_refill_s: float = Field(default=10.0, gt=0)  # one hedge token back every this many seconds
    max_extra_ratio: float = Field(default=0.10, ge=0)  # duplicate spend cap, as a share of all spend ...
    window_s: float = Field(default=300.0, gt=0)  # ... over this window
    burst_usd: float = Field(default=0.01, ge=0)  # room for a cold process's first hedges


class SubDeadlineSettings(_Strict):
    """Per-call sub-deadlines (nodes/policy/deadlines.py): no single call may take the request's whole budget."""

    p95_multiple: float = Field(default=3.0, gt=0)  # a call may take this multiple of its provider's robust p95 ...
    min_s: float = Field(default=1.0, gt=0)  # ... but never less than this ...
    cold_s: float = Field(default=10.0, gt=0)  # ... and this while the provider has too few samples
    min_samples: int = Field(default=5, ge=1)
    # The cross-check may hold the answer back by at most this share of the time left ...
    cross_check_share: float = Field(default=0.25, gt=0, le=1)
    # ... and, all checks of one answer together, by this multiple of the time the answer took (at least the
    # checker's usual latency: its robust p95, min_s before it has samples).
    cross_check_answer_ratio: float = Field(default=0.5, gt=0)
    # An abandoned call (a hedge's loser) may finish in the background this long past its provider's usual
    # latency, so its real usage is known; then it is aborted and counted as a timeout.
    loser_grace_s: float = Field(default=1.0, ge=0)


class ResilienceSettings(_Strict):
    retry: RetrySettings = Field(default_factory=RetrySettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    hedge: HedgeSettings = Field(default_factory=HedgeSettings)
    deadlines: SubDeadlineSettings = Field(default_factory=SubDeadlineSettings)


class BriefingSettings(_Strict):
    """Ward briefings (graphs/briefing.py, graphs/ward_reports.py)."""

    # How long a cached briefing (and its ETag) lives: the contract's ETAG_TTL.
    etag_ttl_s: int = Field(default=60, ge=1)
    # Share of the briefing's deadline the parallel research may use; the rest is the writer's.
    gather_share: float = Field(default=0.5, gt=0, lt=1)
    # The ward's own posts and news (providers/ward_data.py): a SQLAlchemy URL or a JSONL path; "" for none.
    ward_data_url: str = ""
    ward_data_table: str = "ward_posts"
    ward_data_limit: int = Field(default=10, ge=1, le=100)


class RetentionSettings(_Strict):
    """What is kept of finished threads and how long a runner's lease lives (graphs/stores/retention.py, lease.py).

    Running and interrupted (resumable) threads are never expired nor pruned, whatever these say.
    """

    # A finished analysis or briefing is deleted this many days after it finished (0: kept for ever). On Redis
    # its keys get this TTL when it finishes; `strategist prune` applies it everywhere.
    keep_days: float = Field(default=30.0, ge=0)
    # What `strategist prune` keeps of a finished thread younger than keep_days: every checkpoint ("all", for
    # time travel) or only the final one ("final": the result, feedback and resume still work).
    keep: Literal["all", "final"] = "all"
    # A runner's lease on Redis expires this long after its process stops renewing it (it renews every third).
    lease_ttl_s: float = Field(default=30.0, ge=1)


class Settings(_Strict):
    providers: dict[str, ProviderSettings]
    prices: dict[str, list[Price]]
    deadlines: Deadlines
    routing: RoutingSettings
    sources: SourceTable
    confidence: ConfidenceSettings = Field(default_factory=ConfidenceSettings)
    data_dir: Path
    redis_url: str | None = None
    config_file: Path | None = None
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    # Token for operator routes (circuit-breaker reset); None: those routes refuse everyone.
    admin_token: SecretStr | None = None
    briefing: BriefingSettings = Field(default_factory=BriefingSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)

    def price_for(self, model: str, tier: Tier, on: dt.date | None = None) -> Price:
        """Return the price in force for a model on a day; local models without an entry cost nothing."""
        entries = self.prices.get(model)
        if not entries:
            if tier == "local":
                return Price(input_per_m=0.0, output_per_m=0.0, source="local default: no marginal cost")
            raise ConfigError(f"no price for model {model!r}: add [[prices.{model!r}]] to the config file")
        day = on or dt.date.today()
        current = [p for p in entries if p.effective_from is None or p.effective_from <= day]
        pool = current or entries
        return max(pool, key=lambda p: p.effective_from or dt.date.min)

    def priced_model(self, reported: str) -> str | None:
        """Return the price-table name of a model as a provider reports it, or None when the table lacks it.

        Vendors report versioned or prefixed names ("models/gemini-2.5-pro", "gemini-2.5-pro-001"): the longest
        table name that the reported one is, or starts with followed by "-", is its price.
        """
        name = reported.removeprefix("models/")
        if name in self.prices:
            return name
        matches = [known for known in self.prices if name.startswith(known + "-")]
        return max(matches, key=len, default=None)

    def provider_for_tier(self, tier: Tier) -> ProviderSettings | None:
        return next((p for p in self.providers.values() if p.tier == tier), None)


def default_data_dir() -> Path:
    """Follow the XDG convention on Linux, the usual per-user folders elsewhere."""
    base = os.environ.get("XDG_DATA_HOME")
    if base:
        return Path(base) / "strategist"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "strategist"
    return Path.home() / ".local" / "share" / "strategist"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# Environment variable -> (provider, field). Only the settings people change per deployment are here; the rest
# belongs in the TOML file.
_PROVIDER_ENV: dict[str, tuple[str, str]] = {
    "GEMINI_API_KEY": ("gemini", "api_key"),
    "GEMINI_BASE_URL": ("gemini", "base_url"),
    "GEMINI_MODEL": ("gemini", "model"),
    "PERPLEXITY_API_KEY": ("perplexity", "api_key"),
    "PERPLEXITY_BASE_URL": ("perplexity", "base_url"),
    "PERPLEXITY_MODEL": ("perplexity", "model"),
    "LOCAL_MODEL_PATH": ("local", "model_path"),
    "LOCAL_BASE_URL": ("local", "base_url"),
    "LOCAL_MODEL": ("local", "model"),
    "LOCAL_ADEQUACY_PATH": ("local", "adequacy_path"),
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from defaults, ``STRATEGIST_CONFIG`` (a TOML file) and the environment."""
    env = os.environ if environ is None else environ
    raw = _read_toml(DEFAULTS_PATH)
    config_file: Path | None = None
    if env.get("STRATEGIST_CONFIG"):
        config_file = Path(env["STRATEGIST_CONFIG"]).expanduser()
        raw = _merge(raw, _read_toml(config_file))
    for var, (provider, field) in _PROVIDER_ENV.items():
        value = env.get(var, "").strip()
        if value and provider in raw.get("providers", {}):
            raw["providers"][provider][field] = value
    local = raw.get("providers", {}).get("local")
    if isinstance(local, dict) and env.get("LOCAL_MODEL_PATH", "").strip() and not env.get("LOCAL_MODEL", "").strip():
        # Report the user's own GGUF by its file name rather than the embedded default's.
        local["model"] = Path(env["LOCAL_MODEL_PATH"].strip()).stem
    if env.get("ROUTING_MODE"):
        raw.setdefault("routing", {})["mode"] = env["ROUTING_MODE"].strip()
    if env.get("ROUTING_ROLLOUT_PERCENT"):
        raw.setdefault("routing", {})["rollout_percent"] = env["ROUTING_ROLLOUT_PERCENT"].strip()
    for name, entry in raw.get("providers", {}).items():
        if isinstance(entry, dict):
            entry.setdefault("name", name)
    raw["data_dir"] = Path(env.get("STRATEGIST_DATA_DIR") or raw.get("data_dir") or default_data_dir()).expanduser()
    raw["redis_url"] = env.get("REDIS_URL") or raw.get("redis_url") or None
    raw["admin_token"] = env.get("STRATEGIST_ADMIN_TOKEN") or raw.get("admin_token") or None
    raw["config_file"] = config_file
    for var, field in (
        ("ETAG_TTL", "etag_ttl_s"),
        ("WARD_DATA_URL", "ward_data_url"),
        ("WARD_DATA_TABLE", "ward_data_table"),
    ):
        if env.get(var, "").strip():
            raw.setdefault("briefing", {})[field] = env[var].strip()
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        where = config_file or "the environment"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise ConfigError(f"invalid configuration (from {where}): {problems}") from None
    for configured in settings.providers.values():
        if configured.tier != "local":
            settings.price_for(configured.model, configured.tier)  # fail at start-up, not mid-analysis
        elif configured.adequacy_path and not Path(configured.adequacy_path).expanduser().is_file():
            raise ConfigError(
                f"{configured.name}: adequacy_path {configured.adequacy_path!r} is not a file: measure the model "
                f"with bench/local.py --write PATH, or unset LOCAL_ADEQUACY_PATH"
            )
    secrets.register(_secrets_of(settings, env))
    return settings


def _secrets_of(settings: Settings, env: Mapping[str, str]) -> list[str | None]:
    """List every secret this configuration holds, for redaction (providers/secrets.py)."""
    values: list[str | None] = [p.api_key.get_secret_value() for p in settings.providers.values() if p.api_key]
    values.append(settings.admin_token.get_secret_value() if settings.admin_token else None)
    values.append(env.get("STRATEGIST_API_TOKEN"))
    if settings.redis_url:
        values.append(urlsplit(settings.redis_url).password)
    return values
