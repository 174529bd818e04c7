"""The retail skills as LangChain tools, for an LLM that answers retail questions.

:class:`Toolbox` wraps one :class:`~bot.retail.skills.Desk` (one question: one store, one moment)
and offers five tools: ``list_deals``, ``promotion_status``, ``product_info``, ``store_info`` and
``list_stores``. Names the model passes are resolved the way the router resolves a member's words
(:meth:`knowledge.lookup.Lookup.mentions`, :meth:`knowledge.records.StoreDirectory.resolve`).

Contract: a tool returns the skill's reply text (plain Chinese), and :attr:`Toolbox.findings`
keeps every :class:`~bot.retail.skills.Finding` returned, so the writer knows which texts the
answer may quote and which records to cite. A name the records do not know gives a "没有找到…"
text, arguments the schema refuses give an error text: a tool never raises for the model's input.
"""

from __future__ import annotations

from typing import Final, Literal

from langchain_core.messages import ToolMessage
from langchain_core.messages.tool import ToolCall
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from bot.retail.skills import Desk, Finding, Topic
from knowledge.records import Promotion, Store

Attribute = Literal["hours", "address", "phone", "parking"]

BAD_ARGUMENTS: Final = "参数不正确，请按工具说明重新调用。"
"""The tool result when the model's arguments do not fit the tool's schema."""


class DealsArgs(BaseModel):
    category: str | None = Field(default=None, description="商品品类，例如 水果、面包；不限则留空")
    product: str | None = Field(default=None, description="商品名或货号；不限则留空")


class PromotionArgs(BaseModel):
    name: str = Field(description="活动名称，或活动涉及的商品名")


class ProductArgs(BaseModel):
    name_or_sku: str = Field(description="商品名或货号")


class StoreArgs(BaseModel):
    store: str | None = Field(default=None, description="门店名或城市；留空表示会员所在门店")
    attribute: Attribute | None = Field(
        default=None,
        description="hours 营业时间、address 地址、phone 电话、parking 停车；留空返回全部信息",
    )


class StoresArgs(BaseModel):
    city: str | None = Field(default=None, description="城市名；留空列出全部门店")


TOOLS: Final[tuple[tuple[str, type[BaseModel], str], ...]] = (
    ("list_deals", DealsArgs, "查询现在进行中和即将开始的优惠活动，可按品类或商品筛选。"),
    ("promotion_status", PromotionArgs, "查询某个活动的状态（进行中、已结束、未开始）和适用门店。"),
    ("product_info", ProductArgs, "查询商品的价格、规格和正在进行的优惠。"),
    ("store_info", StoreArgs, "查询门店的营业时间、地址、电话或停车信息。"),
    ("list_stores", StoresArgs, "列出门店（某个城市的或全部），含地址和营业时间。"),
)
"""(name, arguments, description) of each tool; the name is the :class:`Toolbox` method run."""


class Toolbox:
    """The skills of one ``desk`` as tools; :attr:`findings` collects what they returned."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self.findings: list[Finding] = []
        self.tools: tuple[BaseTool, ...] = tuple(
            StructuredTool.from_function(
                func=getattr(self, name),
                name=name,
                description=description,
                args_schema=schema,
                handle_validation_error=BAD_ARGUMENTS,
            )
            for name, schema, description in TOOLS
        )
        self._by_name = {t.name: t for t in self.tools}

    def run(self, call: ToolCall) -> ToolMessage:
        """Execute one tool call of the model; the result answers the call's id."""
        tool = self._by_name.get(call["name"])
        if tool is None:
            return ToolMessage(f"没有名为{call['name']}的工具。", tool_call_id=call["id"] or "")
        result = tool.invoke(call)
        assert isinstance(result, ToolMessage)  # invoked with a ToolCall, a tool answers with one
        return result

    # ---- the tools ----------------------------------------------------------------------------

    def list_deals(self, category: str | None = None, product: str | None = None) -> str:
        """The deals on now (and starting soon) here, narrowed to a category or a product."""
        topic = self._topic(category, product)
        if topic is None:
            return self._note(f"没有找到「{product or category}」相关的商品或品类。")
        return self._keep(self.desk.deals(topic))

    def promotion_status(self, name: str) -> str:
        """Whether the named promotion (or the promotions on a named product) runs here now."""
        promos = self._promotions(name)
        if not promos:
            return self._note(f"没有找到名为「{name}」的活动。")
        return self._keep(self.desk.status(promos))

    def product_info(self, name_or_sku: str) -> str:
        """The product's card with its deals here now; several matches: a short list."""
        catalogue = self.desk.catalogue
        exact = catalogue.product(name_or_sku.strip())
        named = catalogue.lookup.mentions(name_or_sku).products
        products = (exact,) if exact is not None else named
        if not products:
            return self._note(f"没有找到商品「{name_or_sku}」。")
        return self._keep(self.desk.products(products))

    def store_info(self, store: str | None = None, attribute: Attribute | None = None) -> str:
        """``attribute`` (or every field) of the named store, a city's stores, or the asker's."""
        stores = self._stores(store)
        if not stores:
            names = "、".join(s.name for s in self.desk.catalogue.stores.stores)
            known = f"我们的门店有：{names}。" if names else ""
            return self._note(f"没有找到门店「{store}」。{known}")
        return self._keep(self.desk.store_info(stores, attribute))

    def list_stores(self, city: str | None = None) -> str:
        """The stores (of ``city``), each with its address and hours."""
        return self._keep(self.desk.store_list(city.strip() if city else None))

    # ---- resolving names ----------------------------------------------------------------------

    def _topic(self, category: str | None, product: str | None) -> Topic | None:
        """The topic the arguments name; None when a name is given but the records lack it."""
        lookup = self.desk.catalogue.lookup
        products = lookup.mentions(product).products if product else ()
        named = lookup.mentions(category) if category else None
        categories = named.categories if named else ()
        if named is not None and not categories and not products:
            products = named.products  # a product passed as the category (草莓)
        if (product and not products) or (category and not (categories or products)):
            return None
        label = products[0].name if products else (categories[0] if categories else "")
        return Topic(products=products, categories=categories, label=label)

    def _promotions(self, name: str) -> list[Promotion]:
        mentions = self.desk.catalogue.lookup.mentions(name)
        if mentions.promotions:
            return list(mentions.promotions)
        if not mentions.products:
            return []
        topic = Topic(products=mentions.products)
        desk = self.desk
        promos = desk.catalogue.promotions
        return [p for p in promos if desk.relates(p, topic) and p.applies_to_store(desk.store_id)]

    def _stores(self, name: str | None) -> tuple[Store, ...]:
        directory = self.desk.catalogue.stores
        if not name:
            own = self.desk.store
            return (own,) if own is not None else directory.stores
        found = directory.get(directory.resolve(name))
        if found is not None:
            return (found,)
        mentions = self.desk.catalogue.lookup.mentions(name)
        if mentions.stores:
            return mentions.stores
        return tuple(s for city in mentions.cities for s in directory.in_city(city))

    def _keep(self, finding: Finding) -> str:
        self.findings.append(finding)
        return finding.text

    def _note(self, text: str) -> str:
        return self._keep(Finding(text))
