"""Fixtures of the reliability catalogue.

``template``: one file:// store built once per session: churn data (2 training days, DS scored,
NEXT not scored yet) and three registered versions, trained once on small data:

* v1: the churn config on labels that are pure noise (a weak model; the promotion race needs a
  champion that both candidates beat),
* v2: the churn config (HistGradientBoosting): ``champion``; DS is scored with it,
* v3: LogisticRegression.

Each case gets a private copy (``ctx.store``), or a copy on the moto S3 server (``ctx.s3_store()``),
or a store behind the fault-injecting proxy (``ctx.faulty_store()``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import uuid
from functools import cached_property
from pathlib import Path

import pytest
from catalogue_helpers import (
    DS,
    NEXT,
    OWNER,
    TRAIN_DAYS,
    Child,
    copy_store,
    input_frames,
    small_config,
)


@pytest.fixture(scope="module", autouse=True)
def _one_compute_thread():
    """OpenMP/BLAS with one thread: HistGradientBoosting's predict on small batches otherwise pays
    an OpenMP fork/join per tree that explodes when the 2 cores are busy (seconds per batch)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def template(tmp_path_factory) -> str:
    from threadpoolctl import threadpool_limits

    from airflow_mlops.config.locations import Locations
    from airflow_mlops.config.model import EstimatorConfig, FrozenDict
    from airflow_mlops.demo.data import churn_day
    from airflow_mlops.registry.lifecycle import train_and_register
    from airflow_mlops.registry.model_registry import ModelRegistry
    from airflow_mlops.scoring.batch import score_partition
    from airflow_mlops.store.artifacts import ArtifactStore

    root = tmp_path_factory.mktemp("reliability-template") / "store"
    store = ArtifactStore("file://" + str(root))
    cfg = small_config()
    data = Locations(cfg, store).input
    noisy_cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dataset="churn_noisy"))
    noisy = Locations(noisy_cfg, store).input
    for d in TRAIN_DAYS:
        data.write(d, churn_day(d, rows=400))
        noisy.write(d, churn_day(d, rows=400, label_noise=0.5))
    data.write(DS, input_frames(DS))
    data.write(NEXT, input_frames(NEXT))
    lr = dataclasses.replace(cfg, estimator=EstimatorConfig("sklearn.linear_model.LogisticRegression",
                                                            FrozenDict({"max_iter": 500})))
    with threadpool_limits(limits=1):
        assert train_and_register(noisy_cfg, store, TRAIN_DAYS[-1], actor=OWNER)["version"] == 1
        assert train_and_register(cfg, store, TRAIN_DAYS[-1], actor=OWNER)["version"] == 2
        assert train_and_register(lr, store, TRAIN_DAYS[-1], actor=OWNER)["version"] == 3
    ModelRegistry(store).set_alias("churn", "champion", 2, actor="tests", reason="template")
    score_partition(cfg, store, DS, run_id="scheduled__template")
    return str(root)


class Ctx:
    """What a catalogue case works with; everything is created on first use."""

    def __init__(self, request, tmp_path: Path, template: str) -> None:
        self.request = request
        self.tmp = tmp_path
        self.template = template
        self.config = small_config()

    # ---- stores --------------------------------------------------------------------------
    @cached_property
    def store(self):
        from airflow_mlops.store.artifacts import ArtifactStore

        root = self.tmp / "store"
        shutil.copytree(self.template, root)
        return ArtifactStore("file://" + str(root))

    @property
    def registry(self):
        from airflow_mlops.registry.model_registry import ModelRegistry

        return ModelRegistry(self.store)

    @property
    def data(self):
        from airflow_mlops.config.locations import Locations

        return Locations(self.config, self.store).input

    @cached_property
    def moto(self):
        return self.request.getfixturevalue("moto_server")

    def new_bucket(self) -> str:
        bucket = f"rel-{uuid.uuid4().hex[:12]}"
        self.moto.client().create_bucket(Bucket=bucket)
        return bucket

    def s3_store(self, with_template: bool = True):
        """A fresh bucket on the moto server (connection ``aws_default``), holding the template."""
        from airflow_mlops.store.artifacts import ArtifactStore

        store = ArtifactStore(f"s3://{self.new_bucket()}/root", conn_id="aws_default")
        if with_template:
            copy_store(ArtifactStore("file://" + self.template), store)
        return store

    @cached_property
    def proxy(self):
        from faultproxy import FaultProxy

        proxy = FaultProxy(self.moto.endpoint).start()
        self.request.addfinalizer(proxy.stop)
        return proxy

    def define_connection(self, conn_id: str, **fields) -> None:
        """An Airflow connection from the environment (``AIRFLOW_CONN_<ID>`` JSON)."""
        mp = self.request.getfixturevalue("monkeypatch")
        mp.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "aws", **fields}))

    def faulty_store(self, bucket: str | None = None, secret: str = "testing"):
        """A store on ``bucket`` whose requests go through the fault proxy (connection ``mlops_faulty``)."""
        from airflow_mlops.store.artifacts import ArtifactStore

        bucket = bucket or self.new_bucket()
        self.define_connection("mlops_faulty", login="testing", password=secret,
                               extra={"endpoint_url": self.proxy.endpoint, "region_name": "us-east-1"})
        return ArtifactStore(f"s3://{bucket}/root", conn_id="mlops_faulty")

    def no_ambient_aws_credentials(self) -> None:
        mp = self.request.getfixturevalue("monkeypatch")
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                    "AWS_DEFAULT_PROFILE"):
            mp.delenv(var, raising=False)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_CONFIG_FILE", str(self.tmp / "no-aws-config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(self.tmp / "no-aws-credentials"))

    # ---- logs ------------------------------------------------------------------------------
    @cached_property
    def caplog(self):
        caplog = self.request.getfixturevalue("caplog")
        caplog.set_level(logging.INFO)
        caplog.set_level(logging.DEBUG, logger="airflow_mlops")
        return caplog

    # ---- children ----------------------------------------------------------------------------
    def child(self, body: str, name: str = "child") -> Child:
        c = Child(body, self.tmp, name)
        self.request.addfinalizer(c.kill)
        return c

    def marker(self, name: str) -> Path:
        return self.tmp / name


@pytest.fixture
def ctx(request, tmp_path, template) -> Ctx:
    return Ctx(request, tmp_path, template)


@pytest.fixture(scope="session")
def promotion_race(template, tmp_path_factory) -> dict:
    """Two processes run ``promote_candidate`` for v2 and v3 at the same moment, against the weak
    champion v1. Each child's gate is slowed by 1 s (``decide`` sleeps) so both read the champion
    before either writes: the worst interleaving, made deterministic."""
    from airflow_mlops.registry.model_registry import ModelRegistry
    from airflow_mlops.store.artifacts import ArtifactStore

    work = tmp_path_factory.mktemp("promotion-race")
    root = work / "store"
    shutil.copytree(template, root)
    store = ArtifactStore("file://" + str(root))
    ModelRegistry(store).set_alias("churn", "champion", 1, actor="tests", reason="weak champion")
    go = work / "GO"
    children = {}
    for v in (2, 3):
        body = f"""
            import airflow_mlops.registry.gate as promotion
            from airflow_mlops.store.artifacts import ArtifactStore
            from airflow_mlops.registry.lifecycle import promote_candidate
            from catalogue_helpers import small_config
            real = promotion.decide
            def slow_decide(*a, **k):
                time.sleep(1.0)
                return real(*a, **k)
            promotion.decide = slow_decide
            cfg, store = small_config(), ArtifactStore({store.root!r})
            open({str(work / f"READY{v}")!r}, "w").close()
            while not os.path.exists({str(go)!r}):
                time.sleep(0.002)
            print(json.dumps(promote_candidate(cfg, store, {v}, actor="trainer-{v}")))
        """
        children[v] = Child(body, work, f"promote{v}")
    try:
        for v, c in children.items():
            c.wait_for(work / f"READY{v}")
        go.touch()
        results = {v: c.result() for v, c in children.items()}
    finally:
        for c in children.values():
            c.kill()
    return {"store": store, "results": results}


def pytest_collection_modifyitems(items):
    """Cases using the moto server get the ``s3`` marker (``-m "not s3"`` skips them)."""
    here = Path(__file__).parent
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or here not in Path(str(item.path)).parents:
            continue
        case_id = str(callspec.id)
        if case_id.startswith("s3.") or case_id.endswith(".s3"):
            item.add_marker(pytest.mark.s3)
