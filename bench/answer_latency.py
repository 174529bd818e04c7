"""Answer latency of the full pipeline (no LLM: extractive answers) on a 10,000-chunk knowledge
base.

    python bench/answer_latency.py [--chunks 10000] [--messages 300] [--embedding local|hash]

Prints one JSON object: chunks, messages, embedding, p50_ms, p95_ms, mean_ms, max_ms, ingest_s (plus
``cached`` and the ``answered_by`` mix). Each message is a new message id through
``App.inbox.handle``: the durable inbox (record, claim, hand out), member upsert, commands,
retrieval, extractive answer, reply guard, storing the exchange. The figure that counts is the
default ``local`` embedder (target p95 < 50 ms on 2 cores); ``hash`` only makes a quick smoke run.

The knowledge base is the demo brand plus a synthetic but realistic catalogue (product names from
brand × variant × base product × spec, FAQ rows from templates × stores × products, store-scoped
promotions with past, current and future windows). Building it embeds ~15k texts (~3 min with the
local embedder), so the built data dir is cached under ``bench/.cache/`` keyed by the parameters,
the generator version and the demo files; each run works on a fresh copy of it.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.app import App
from bot.demo import DEMO_STORES, SAMPLE_QUESTIONS, demo_files, write_current_demo
from bot.ingesting import FileResult, ingest_files
from bot.settings import Settings
from bot.types import InboundMessage, MemberRef
from knowledge.loaders import load_path
from knowledge.metadata import MetaOverrides

GENERATOR_VERSION = "2"
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
WARMUP = 10
ROWS_PER_FILE = 2500

BRANDS = [
    "禾町",
    "田园",
    "山野",
    "北纬",
    "海岸",
    "晨光",
    "原野",
    "谷丰",
    "青禾",
    "南岭",
    "云栖",
    "湖畔",
]
VARIANTS = ["原味", "低糖", "经典", "家庭装", "精选", "有机", "轻享", "浓香"]
# base product, category, specs, price range (元), storage
BASES: list[tuple[str, str, tuple[str, ...], tuple[int, int], str]] = [
    ("鲜牛奶", "乳品", ("950ml", "450ml", "1.5L"), (8, 30), "需 2–6℃ 冷藏"),
    ("酸奶", "乳品", ("100g×4 杯", "1kg", "200g×6 瓶"), (10, 40), "需冷藏"),
    ("奶酪棒", "乳品", ("20 支", "10 支"), (25, 60), "需冷藏"),
    ("吐司", "烘焙", ("450g", "300g"), (10, 25), "常温保存 3 天"),
    ("牛角面包", "烘焙", ("4 只装", "6 只装"), (12, 30), "常温保存 2 天"),
    ("欧包", "烘焙", ("320g", "500g"), (15, 35), "常温保存 3 天"),
    ("蓝莓", "水果", ("125g×2 盒", "250g"), (20, 50), "需冷藏"),
    ("脐橙", "水果", ("2.5kg", "5kg"), (30, 70), "阴凉处保存"),
    ("苹果", "水果", ("1.5kg", "3kg"), (15, 45), "冷藏更佳"),
    ("香蕉", "水果", ("1kg", "1.5kg"), (6, 15), "常温保存"),
    ("菠菜", "蔬菜", ("300g", "500g"), (5, 12), "需冷藏"),
    ("番茄", "蔬菜", ("500g", "1kg"), (6, 15), "常温保存"),
    ("土豆", "蔬菜", ("1kg", "2.5kg"), (5, 15), "阴凉干燥处保存"),
    ("三文鱼", "水产", ("200g", "400g"), (50, 130), "需 0–4℃ 冷藏"),
    ("虾仁", "水产", ("300g", "500g"), (30, 80), "需冷冻"),
    ("五花肉", "肉禽", ("500g", "1kg"), (25, 70), "需冷藏"),
    ("鸡胸肉", "肉禽", ("500g", "1kg"), (15, 40), "需冷冻"),
    ("鸡蛋", "蛋品", ("30 枚", "15 枚"), (18, 45), "冷藏更佳"),
    ("大米", "粮油", ("5kg", "10kg", "2.5kg"), (30, 130), "阴凉干燥处保存"),
    ("花生油", "粮油", ("5L", "1.8L"), (30, 110), "避光保存"),
    ("挂面", "粮油", ("1kg", "500g"), (6, 20), "阴凉干燥处保存"),
    ("生抽", "调味", ("500ml", "1L"), (8, 25), "开封后冷藏"),
    ("香醋", "调味", ("500ml", "1L"), (6, 20), "阴凉处保存"),
    ("每日坚果", "零食", ("25g×30 袋", "25g×7 袋"), (30, 110), "密封保存"),
    ("海苔", "零食", ("40g", "80g"), (8, 20), "密封防潮"),
    ("黑巧克力", "零食", ("100g", "200g"), (15, 45), "20℃ 以下保存"),
    ("冷萃咖啡", "饮品", ("250ml×6 瓶", "1L"), (25, 60), "需冷藏"),
    ("乌龙茶", "饮品", ("500ml×15 瓶", "500ml"), (4, 60), "常温保存"),
    ("矿泉水", "饮品", ("550ml×24 瓶", "5L"), (10, 35), "常温保存"),
    ("抽纸", "日用", ("120 抽×10 包", "100 抽×6 包"), (15, 40), "干燥处存放"),
    ("洗衣液", "日用", ("2kg", "3kg"), (25, 70), "儿童不可触及"),
    ("垃圾袋", "日用", ("50 只×3 卷", "30 只×5 卷"), (10, 25), "干燥处存放"),
    ("洗面奶", "个护", ("120g", "100ml"), (30, 90), "避光保存"),
    ("牙膏", "个护", ("120g", "60g"), (10, 35), "常温保存"),
    ("洗发水", "个护", ("500ml", "750ml"), (30, 90), "避光保存"),
]
# synthetic stores beyond the demo's four: (store id, name)
MORE_STORES = [
    ("sh-jingan", "上海静安店"),
    ("sh-changning", "上海长宁店"),
    ("sh-minhang", "上海闵行店"),
    ("sh-baoshan", "上海宝山店"),
    ("hz-binjiang", "杭州滨江店"),
    ("hz-gongshu", "杭州拱墅店"),
    ("hz-xiaoshan", "杭州萧山店"),
    ("sz-sip", "苏州工业园店"),
    ("nj-gulou", "南京鼓楼店"),
    ("nj-jiangning", "南京江宁店"),
    ("nb-yinzhou", "宁波鄞州店"),
    ("wx-liangxi", "无锡梁溪店"),
]
STORE_FAQ = [
    ("{store}几点开门？", "{store}几点关门", "{store}营业时间为每天 {open}–{close}。"),
    ("{store}停车收费吗？", "{store}有停车场吗", "{store}当日消费满 {spend} 元可免费停车 2 小时。"),
    (
        "{store}可以自提吗？",
        "{store}自提在哪里",
        "{store}支持小程序到店自提，在服务台凭取货码取货。",
    ),
    ("{store}电话是多少？", "怎么联系{store}", "{store}门店电话 {phone}，营业时间内均可拨打。"),
    (
        "{store}有熟食区吗？",
        "{store}有现烤面包吗",
        "{store}设有熟食区和现烤烘焙区，每天 07:00 出炉。",
    ),
]
PRODUCT_FAQ = [
    ("{name}保质期多久？", "{name}（{spec}）保质期以包装为准，{storage}，开封后请尽快食用。"),
    ("{name}放在哪个区？", "{name}陈列在{category}区，找不到可以问店员或在小程序搜索 {sku}。"),
    ("{name}可以送货上门吗？", "{name}可以在小程序下单配送，门店 3 公里内最快 30 分钟送达。"),
    ("{name}有没有货？", "{name}（{sku}）各门店库存以小程序显示为准，缺货可点“到货提醒”。"),
]
OFF_TOPIC = [
    "今天天气怎么样",
    "帮我写一首诗",
    "股票怎么买",
    "推荐一部好看的电影",
    "你是机器人吗",
    "明天会下雨吗",
    "讲个笑话吧",
    "北京到上海的高铁票多少钱",
    "怎么学好英语",
    "世界杯谁夺冠了",
]
RETAIL = [  # deals, promotion status, prices and stores: answered from records
    "现在有什么优惠活动？",
    "最近有啥优惠",
    "水果有特价吗",
    "有没有满减",
    "蓝莓季到哪天？",
    "早餐券杭州店能用吗",
    "国庆囤货节还有吗",
    "蓝莓多少钱",
    "徐汇店几点关门？",
    "浦东店在哪里",
    "你们几点开门",
    "西湖店电话多少",
    "你们一共有几家门店",
]
DEMO_STYLE = [
    *SAMPLE_QUESTIONS,
    "会员日是哪天？",
    "怎么开发票？",
    "可以用支付宝吗？",
    "蛋糕要提前多久订？",
    "积分会过期吗？",
    "自提订单保留多久？",
    "退款多久到账？",
    "有无麸质的面包吗？",
]


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price: float
    spec: str
    category: str
    storage: str


def _products(rng: random.Random, count: int) -> list[Product]:
    space = [(b, v, base, s) for b in BRANDS for v in VARIANTS for base in BASES for s in base[2]]
    picked = rng.sample(space, min(count, len(space)))
    return [
        Product(
            sku=f"HD-{20001 + i}",
            name=f"{brand}{variant}{base[0]}",
            price=round(rng.uniform(*base[3]), 1),
            spec=spec,
            category=base[1],
            storage=base[4],
        )
        for i, (brand, variant, base, spec) in enumerate(picked)
    ]


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> list[Path]:
    """Write ``rows`` in files of at most ROWS_PER_FILE rows (path-1.csv, path-2.csv, ...)."""
    written = []
    for n, start in enumerate(range(0, len(rows), ROWS_PER_FILE), 1):
        target = path.with_name(f"{path.stem}-{n}.csv")
        with target.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows[start : start + ROWS_PER_FILE])
        written.append(target)
    return written


def build_corpus(target: Path, chunks: int, seed: int, today: date) -> list[Path]:
    """Write the demo brand and synthetic files, about ``chunks`` chunks in all, into ``target``."""
    rng = random.Random(seed)
    files = write_current_demo(target / "demo", today)
    remaining = max(0, chunks - sum(len(load_path(p).chunks) for p in files))
    n_products, n_product_faq = remaining * 40 // 100, remaining * 35 // 100
    stores = {**DEMO_STORES, **dict(MORE_STORES)}
    n_promotions = remaining - n_products - n_product_faq - len(stores) * len(STORE_FAQ)
    products = _products(rng, n_products)
    files += _write_csv(  # the other branches, so promotions may be scoped to them
        target / "branches.csv",
        ["门店编号", "门店名称", "营业时间", "电话"],
        [[sid, name, "每天 08:00–22:00", f"021-5{i:03d}-2200"] for i, (sid, name) in
         enumerate(MORE_STORES)],
    )  # fmt: skip
    files += _write_csv(
        target / "catalogue.csv",
        ["sku", "name", "price", "spec", "category", "description"],
        [[p.sku, p.name, f"{p.price:.2f}", p.spec, p.category, p.storage] for p in products],
    )
    faq = [_product_faq(rng, rng.choice(products)) for _ in range(n_product_faq)]
    faq += [_store_faq(rng, name, t) for name in stores.values() for t in STORE_FAQ]
    files += _write_csv(target / "faq.csv", ["question", "answer", "variants"], faq)
    promos = [_promotion(rng, rng.choice(products), stores, today) for _ in range(n_promotions)]
    files += _write_csv(
        target / "promotions.csv",
        ["question", "answer", "kind", "store_id", "valid_from", "valid_to"],
        promos,
    )
    return files


def _product_faq(rng: random.Random, p: Product) -> list[str]:
    question, answer = rng.choice(PRODUCT_FAQ)
    fields = {"name": p.name, "spec": p.spec, "storage": p.storage, "category": p.category}
    return [question.format(**fields), answer.format(sku=p.sku, **fields), ""]


def _store_faq(rng: random.Random, store: str, template: tuple[str, str, str]) -> list[str]:
    fields = {
        "store": store,
        "open": rng.choice(["07:30", "08:00", "08:30"]),
        "close": rng.choice(["21:30", "22:00", "22:30"]),
        "spend": str(rng.choice([50, 100, 150])),
        "phone": f"0{rng.randint(21, 579)}-{rng.randint(5000, 8999)}-{rng.randint(1000, 9999)}",
    }
    return [part.format(**fields) for part in template]


def _promotion(rng: random.Random, p: Product, stores: dict[str, str], today: date) -> list[str]:
    store_id = rng.choice([""] * 3 + list(stores))  # about one in five is store-only
    start = today + timedelta(days=rng.choice([-200, -90, -30, -10, -5, 10, 40]))
    end = start + timedelta(days=rng.choice([7, 30, 120, 240]))
    sale = round(p.price * rng.choice([0.7, 0.8, 0.85, 0.9]), 1)
    scope = f"仅限{stores[store_id]}" if store_id else "全部门店及小程序"
    answer = (
        f"活动时间：{start.year}年{start.month}月{start.day}日至{end.year}年{end.month}月{end.day}日，"
        f"{scope}。{p.name}（{p.spec}，{p.sku}）活动价 {sale:.2f} 元，原价 {p.price:.2f} 元，"
        f"每位会员限购 {rng.randint(1, 5)} 件。"
    )
    return [f"{p.name}特价活动", answer, "promotion", store_id, start.isoformat(), end.isoformat()]


def messages(rng: random.Random, count: int, corpus: list[Path]) -> list[tuple[str, str | None]]:
    """``count`` (text, store_id) pairs: in-domain, product/SKU lookups, retail questions (deals,
    promotion status, prices, stores: a quarter of the mix), off-topic."""
    products = [r for p in corpus if p.name.startswith("catalogue") for r in _rows(p)]
    faq = [r["question"] for p in corpus if p.name.startswith("faq-") for r in _rows(p)]
    store_ids = [None, None, *DEMO_STORES]
    out = []
    for _ in range(count):
        roll, product = rng.random(), rng.choice(products)
        if roll < 0.25:
            text = rng.choice(["", "请问", "想问下", "你好，"]) + rng.choice(faq).rstrip("？")
        elif roll < 0.35:
            text = rng.choice(DEMO_STYLE)
        elif roll < 0.47:
            text = f"{product['sku']} 多少钱"
        elif roll < 0.55:
            text = f"{product['name']}现在有活动吗"
        elif roll < 0.62:
            text = f"有没有{product['name']}"
        elif roll < 0.88:
            text = rng.choice(RETAIL)
        else:
            text = rng.choice(OFF_TOPIC)
        out.append((text, rng.choice(store_ids)))
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _settings(data_dir: Path, embedding: str) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        database_url=None,
        knowledge={"embedding": embedding},
        llm={},
    )


def _cache_key(args: argparse.Namespace) -> str:
    digest = hashlib.sha256(GENERATOR_VERSION.encode())
    for path in demo_files():
        digest.update(path.read_bytes())
    return f"kb-{args.chunks}-{args.embedding}-{args.seed}-{digest.hexdigest()[:12]}"


async def build_cache(args: argparse.Namespace, final: Path) -> None:
    """Generate the corpus, ingest it through the app, and move the result to ``final``."""
    CACHE_DIR.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="building-", dir=CACHE_DIR))
    corpus = build_corpus(work / "source", args.chunks, args.seed, datetime.now(UTC).date())
    app = await App.build(_settings(work / "data", args.embedding))
    try:
        started = time.perf_counter()

        def done(result: FileResult) -> None:
            if result.error is not None or result.report is None:
                raise SystemExit(f"cannot ingest {result.path.name}: {result.error}")
            print(f"ingested {result.path.name}: {result.report.chunks} chunks", file=sys.stderr)

        await ingest_files(app.knowledge, corpus, MetaOverrides(), done=done)
        ingest_s = time.perf_counter() - started
        chunk_count = app.knowledge.chunk_count()
    finally:
        await app.close()
    meta = {"ingest_s": round(ingest_s, 1), "chunks": chunk_count}
    (work / "meta.json").write_text(json.dumps(meta))
    os.replace(work, final)


async def measure(args: argparse.Namespace, data_dir: Path, corpus: list[Path]) -> dict[str, Any]:
    """Send warm-up and measured messages through the pipeline; return the latency figures."""
    rng = random.Random(args.seed + 1)
    app = await App.build(_settings(data_dir, args.embedding))
    latencies: list[float] = []
    answered: Counter[str] = Counter()
    try:
        plan = messages(rng, WARMUP + args.messages, corpus)
        for n, (text, store_id) in enumerate(plan):
            started = time.perf_counter()
            reply = await app.inbox.handle(_message(text, store_id, n))
            elapsed = (time.perf_counter() - started) * 1000
            if n >= WARMUP:
                latencies.append(elapsed)
                answered[getattr(reply, "answered_by", type(reply).__name__)] += 1
        chunk_count = app.knowledge.chunk_count()
    finally:
        await app.close()
    return {"chunks": chunk_count, "answered_by": dict(answered), **_summary(latencies)}


def _message(text: str, store_id: str | None, n: int) -> InboundMessage:
    member = f"bench-member-{n % 50}"
    return InboundMessage(
        id=str(uuid.uuid4()),
        channel="bench",
        conversation=member,
        sender=MemberRef("bench", member),
        text=text,
        received_at=datetime.now(UTC),
        store_id=store_id,
    )


def _summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)

    def pct(p: float) -> float:  # nearest rank
        return ordered[max(0, min(len(ordered) - 1, round(p * len(ordered)) - 1))]

    return {
        "p50_ms": round(pct(0.50), 1),
        "p95_ms": round(pct(0.95), 1),
        "mean_ms": round(sum(ordered) / len(ordered), 1),
        "max_ms": round(ordered[-1], 1),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    cached = CACHE_DIR / _cache_key(args)
    was_cached = cached.is_dir() and not args.rebuild
    if not was_cached:
        shutil.rmtree(cached, ignore_errors=True)
        await _build_in_child(args)
    meta = json.loads((cached / "meta.json").read_text())
    corpus = sorted((cached / "source").glob("*.csv"))
    with tempfile.TemporaryDirectory(prefix="siyu-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        shutil.copytree(cached / "data", data_dir)
        figures = await measure(args, data_dir, corpus)
    keys = ("p50_ms", "p95_ms", "mean_ms", "max_ms")
    return {
        "chunks": figures["chunks"],
        "messages": args.messages,
        "embedding": args.embedding,
        **{key: figures[key] for key in keys},
        "ingest_s": meta["ingest_s"],
        "cached": was_cached,
        "answered_by": figures["answered_by"],
    }


async def _build_in_child(args: argparse.Namespace) -> None:
    """Build the cache in a child process, so Chroma and SQLite have closed their files before
    the data dir is copied, and the measuring process starts the same whether the cache was warm
    or cold."""
    argv = ["--chunks", str(args.chunks), "--embedding", args.embedding, "--seed", str(args.seed)]
    child = await asyncio.create_subprocess_exec(sys.executable, __file__, *argv, "--build-only")
    if await child.wait() != 0:
        raise SystemExit(f"building the knowledge base failed (exit {child.returncode})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--embedding", choices=["local", "hash"], default="local")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rebuild", action="store_true", help="ignore the cached knowledge base")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.chunks < 200 or args.messages < 1:
        parser.error("--chunks must be at least 200 and --messages at least 1")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.build_only:
        asyncio.run(build_cache(arguments, CACHE_DIR / _cache_key(arguments)))
    else:
        print(json.dumps(asyncio.run(main(arguments)), ensure_ascii=False))
