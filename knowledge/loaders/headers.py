"""The headers each table shape accepts, in Chinese and English (see :mod:`.shapes`).

Each shape lists its fields with every header that means them; the first two names of a field are
the ones error messages show (``售价/price``). The same header may mean different fields in
different shapes (``门店``: a store's name, a promotion's or a product's store scope), which is
why :mod:`knowledge.loaders.shapes` reads headers per shape. Headers are matched in
:func:`knowledge.loaders.shapes.match_key` form, so case, spaces, underscores and a unit suffix
(``售价（元）``) do not matter here.
"""

from __future__ import annotations

from typing import Final

from knowledge.metadata import META_KEYS

Synonyms = tuple[tuple[str, tuple[str, ...]], ...]
"""Each field with the headers that mean it; the first two are shown in error messages."""


def _names(spaced: str) -> tuple[str, ...]:
    return tuple(spaced.split())


_KIND = ("kind", _names("类型 kind 文档类型"))
_TAGS = ("tags", _names("标签 tags tag"))
_TITLE = ("title", _names("标题 title"))
_FROM = ("valid_from", _names(
    "开始日期 valid_from 开始 开始时间 生效时间 生效日期 起始日期 起始时间 开始日 活动开始 "
    "活动开始时间 活动开始日期 start start_date start_time begin begin_date from"
))  # fmt: skip
_TO = ("valid_to", _names(
    "结束日期 valid_to 结束 结束时间 失效时间 失效日期 截止日期 截止时间 截止 结束日 活动结束 "
    "活动结束时间 活动结束日期 到期日期 到期时间 end end_date end_time until to valid_until expiry "
    "expiry_date"
))  # fmt: skip
_SCOPE = ("stores", _names(
    "适用门店 stores 门店 store store_id store_ids 参与门店 活动门店 门店范围 适用门店范围 "
    "适用店铺 applicable_stores"
))  # fmt: skip
_ALIASES = ("aliases", _names("别名 aliases 又名 俗称 简称 alias"))

PRODUCT_KEYS: Final[Synonyms] = (
    ("sku", _names(
        "SKU 货号 sku编码 商品编码 商品编号 编码 条码 商品条码 条形码 编号 商品货号 "
        "product_id product_code item_code barcode code"
    )),
    ("name", _names(
        "商品名称 name 品名 名称 商品 商品名 产品名称 产品 产品名 product product_name item "
        "item_name"
    )),
    _ALIASES,
    ("spec", _names("规格 spec 规格型号 包装规格 净含量 specification size")),
    ("price", _names(
        "售价 price 价格 单价 零售价 零售价格 销售价 销售价格 标价 价钱 原价 list_price "
        "unit_price retail_price"
    )),
    ("category", _names("类目 category 类别 分类 品类 商品分类 商品类别 商品类目 大类")),
    ("description", _names(
        "描述 description 说明 商品描述 商品说明 简介 备注 详情 卖点 介绍 desc notes remark"
    )),
    ("brand", _names("品牌 brand")),
    ("origin", _names("产地 origin")),
    ("unit", _names("单位 unit")),
    ("stores", _names("适用门店 stores 门店 store store_id 门店编号")),
    _FROM, _TO, _KIND, _TAGS, _TITLE,
)  # fmt: skip
"""Product table headers (``brand``, ``origin``, ``unit`` are kept as fields, shown in the text)."""

STORE_KEYS: Final[Synonyms] = (
    ("store_id", _names(
        "门店编号 store_id 门店id 门店代码 门店编码 店号 编号 店铺编号 店铺id store_code id 代码 "
        "编码 code"
    )),
    ("name", _names(
        "门店名称 name 店名 门店 名称 store_name 店铺名称 店铺 门店名 store 分店 分店名称"
    )),
    _ALIASES,
    ("city", _names("城市 city 所在城市")),
    ("address", _names("地址 address 门店地址 详细地址 店铺地址 位置 location addr store_address")),
    ("hours", _names("营业时间 hours 营业时段 opening_hours business_hours open_hours")),
    ("phone", _names(
        "电话 phone 联系电话 门店电话 电话号码 联系方式 手机 客服电话 tel telephone contact "
        "phone_number contact_number mobile"
    )),
    ("parking", _names("停车 parking 停车信息 停车场 停车说明 停车服务")),
    ("notes", _names(
        "备注 notes 说明 note 其他 服务 门店服务 特色 简介 描述 介绍 门店介绍 配套 description "
        "remark"
    )),
    _KIND, _TAGS, _TITLE,
)  # fmt: skip
"""Store table headers (the values :data:`knowledge.records.STORE_FIELDS` names)."""

PROMOTION_KEYS: Final[Synonyms] = (
    ("title", _names(
        "活动名称 title 活动 活动标题 标题 名称 活动名 主题 活动主题 促销名称 优惠名称 name "
        "promotion promotion_name promo_name campaign campaign_name"
    )),
    ("text", _names(
        "活动内容 text 内容 活动详情 说明 详情 活动说明 优惠内容 活动规则 规则 描述 活动描述 优惠 "
        "促销内容 description content details promotion_details promo_details"
    )),
    _FROM, _TO,
    ("period", _names(
        "活动时间 period 活动日期 有效期 活动期间 起止日期 起止时间 活动周期 validity"
    )),
    _SCOPE,
    ("skus", _names("SKU skus 货号 商品编码 商品货号 活动商品编码")),
    ("category", _names("类目 category 品类 类别 分类 活动类目")),
    _TAGS, _KIND,
)  # fmt: skip
"""Promotion table headers (``period`` is a ``start 至 end`` range in one cell)."""


def _shown_first(field: str) -> tuple[str, ...]:
    """A metadata field's keys, its first Chinese one and its English one first (``开始时间/
    valid_from`` in messages)."""
    names = [k for k, v in META_KEYS.items() if v == field]
    first = [next((k for k in names if not k.isascii()), names[0]), names[0]]
    return tuple(dict.fromkeys((*first, *names)))


QA_KEYS: Final[Synonyms] = (
    ("question", _names("问题 question 标准问题 问 用户问题 常见问题 q")),
    ("answer", _names("答案 answer 回答 答 标准答案 回复 a")),
    ("variants", _names("相似问题 variants 扩展问 相似问 相似问法 其他问法 similar_questions")),
    *((field, _shown_first(field)) for field in dict.fromkeys(META_KEYS.values())),
)  # fmt: skip
"""QA table headers: question, answer, variants and every metadata key."""
