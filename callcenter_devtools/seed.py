# ruff: noqa: RUF001, S311  (Chinese text uses full-width punctuation; the data is random on purpose, not secret)
"""Demo and benchmark data: customers with Chinese and English names, their numbers, contacts, service records,
products and knowledge-base articles, the same for the same seed.

Rows go in with Core bulk inserts (executemany), one transaction per chunk of customers; no ORM objects, so a
million customers seed in minutes on SQLite. Call records are not made here: they come from real calls.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Boolean, Column, Date, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from callcenter.db import Base, Database, UtcDateTime, utcnow
from crm_bridge.exceptions import SeedRefused
from crm_bridge.models import (
    Contact,
    Customer,
    CustomerPhone,
    KbArticle,
    Product,
    RecordStatus,
    RecordType,
    ServiceRecord,
    ServiceRecordHistory,
)
from crm_bridge.phones import DEFAULT_RULES, PhoneRules
from crm_bridge.text import name_key
from crm_bridge.visit_models import EvaluationItem
from crm_bridge.visits import DEFAULT_EVALUATION_ITEMS
from ivr_flows.ports import DEMO_PRODUCTS

log = logging.getLogger("crm_bridge.seed")

CHUNK = 5_000
PROGRESS_EVERY = 100_000
PRODUCTS_MAX = 8_000
SEED_ACTOR = "seed"

Progress = Callable[[str], None]
T = TypeVar("T")

# -- word lists -----------------------------------------------------------------------------------------

_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡"
    "余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯"
    "龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
_GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬飞鹏辉建国建华"
    "志强海燕凤晶欣怡子涵浩然宇轩梓萱一诺思远佳琪俊杰雨桐晨曦天佑"
)
_FIRST_EN = (
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Daniel",
    "Lisa",
    "Matthew",
    "Nancy",
    "Anthony",
    "Betty",
    "Mark",
    "Sandra",
    "Steven",
    "Ashley",
    "Paul",
    "Emily",
    "Andrew",
    "Donna",
    "Joshua",
    "Michelle",
    "Kevin",
    "Carol",
    "Brian",
    "Amanda",
    "George",
    "Melissa",
    "Timothy",
    "Deborah",
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Lucas",
    "Sophia",
    "Ethan",
    "Mia",
    "Grace",
    "Henry",
    "Chloe",
)
_LAST_EN = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Chen",
    "Wong",
    "Murphy",
    "O'Brien",
)
_CITIES = (
    ("北京", "Beijing", "10", ("朝阳区", "海淀区", "东城区", "西城区")),
    ("上海", "Shanghai", "21", ("浦东新区", "徐汇区", "静安区", "黄浦区")),
    ("广州", "Guangzhou", "20", ("天河区", "越秀区", "海珠区")),
    ("深圳", "Shenzhen", "755", ("南山区", "福田区", "宝安区")),
    ("杭州", "Hangzhou", "571", ("西湖区", "滨江区", "余杭区")),
    ("成都", "Chengdu", "28", ("武侯区", "锦江区", "高新区")),
    ("武汉", "Wuhan", "27", ("江汉区", "武昌区", "洪山区")),
    ("南京", "Nanjing", "25", ("鼓楼区", "玄武区", "建邺区")),
    ("西安", "Xi'an", "29", ("雁塔区", "碑林区", "未央区")),
    ("重庆", "Chongqing", "23", ("渝中区", "江北区", "南岸区")),
)
_ROADS = (
    "中山路",
    "人民路",
    "解放路",
    "建设路",
    "和平路",
    "新华路",
    "长江路",
    "文化路",
    "光明路",
    "青年路",
    "科技路",
    "滨河路",
)
_ROADS_EN = (
    "Zhongshan Rd.",
    "Renmin Rd.",
    "Jiefang Rd.",
    "Jianshe Rd.",
    "Heping Ave.",
    "Xinhua St.",
    "Changjiang Rd.",
    "Keji Rd.",
)
_COMPANY_WORDS = (
    "华信",
    "宏达",
    "金鼎",
    "恒通",
    "瑞丰",
    "天成",
    "中科",
    "东方",
    "博远",
    "腾飞",
    "汇丰",
    "永盛",
    "嘉禾",
    "远航",
    "新宇",
    "联创",
)
_COMPANY_KINDS = (
    "科技有限公司",
    "贸易有限公司",
    "实业有限公司",
    "电器有限公司",
    "物业管理有限公司",
    "酒店管理有限公司",
)
_COMPANY_EN = (
    "Acme",
    "Northwind",
    "Contoso",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Blue",
    "Harbor",
    "Red",
    "Pine",
    "Silver",
    "Lake",
)
_COMPANY_EN_KINDS = ("Ltd.", "Trading Co.", "Electronics Ltd.", "Hotels Group", "Property Services")
_MANAGERS = ("赵敏", "钱立", "孙悦", "Olivia Chen", "Mark Liu", "周婷", "Daniel Wu", "吴昊")
_ROLES = ("采购经理", "行政主管", "财务", "Facilities manager", "Office manager", "IT support", "前台")
_NOTES = (
    "偏好下午联系。",
    "Prefers e-mail for quotes.",
    "老客户，注意服务态度。",
    "Asked about extended warranty.",
    "有多台设备在保修期内。",
    "Call the site manager before any visit.",
)
_FOREIGN = ("+1 415 555 {a:04d}", "+44 20 7946 {a:04d}", "+49 30 901820{b:02d}", "+65 6123 {a:04d}")

_CATEGORIES = (
    ("Washing machines", "洗衣机"),
    ("Water heaters", "热水器"),
    ("Air conditioners", "空调"),
    ("Refrigerators", "冰箱"),
    ("Kitchen appliances", "厨房电器"),
    ("Televisions", "电视"),
    ("Air purifiers", "空气净化器"),
    ("Vacuum cleaners", "吸尘器"),
)
_PRODUCT_NAMES = (
    "Aurora",
    "Breeze",
    "Comet",
    "Delta",
    "Echo",
    "Fjord",
    "Glacier",
    "Harbor",
    "Iris",
    "Jade",
    "Kestrel",
    "Lotus",
    "Meridian",
    "Nova",
    "Orion",
    "Pioneer",
)

# weights of record types in a seeded history (complaints are rare, product questions common)
_TYPE_WEIGHTS = (
    (RecordType.PRODUCT_GUIDE, 20),
    (RecordType.FAULT_CONSULTATION, 22),
    (RecordType.BUSINESS_CONSULTATION, 14),
    (RecordType.REPAIR_BOOKING, 16),
    (RecordType.INSTALLATION_BOOKING, 10),
    (RecordType.COMPLAINT, 5),
    (RecordType.SUGGESTION, 4),
    (RecordType.CALLBACK_VISIT, 6),
    (RecordType.VOICEMAIL, 3),
)
_CONTENT = {
    RecordType.PRODUCT_GUIDE: ("咨询{p}的功能和价格。", "Asked about the features and price of the {p}."),
    RecordType.FAULT_CONSULTATION: (
        "{p}显示错误代码E{n}，指导重启后恢复。",
        "{p} shows error E{n}; talked through a reset.",
    ),
    RecordType.BUSINESS_CONSULTATION: ("询问企业批量采购{p}的优惠。", "Asked about volume pricing for the {p}."),
    RecordType.REPAIR_BOOKING: ("{p}不工作，预约上门维修。", "{p} stopped working; booked a repair visit."),
    RecordType.INSTALLATION_BOOKING: ("新购{p}，预约安装。", "Bought a {p}; booked the installation."),
    RecordType.COMPLAINT: ("投诉维修人员迟到两小时。", "Complained that the technician came two hours late."),
    RecordType.SUGGESTION: ("建议增加周末服务时间。", "Suggested weekend service hours."),
    RecordType.CALLBACK_VISIT: ("维修后回访，客户满意。", "Follow-up call after the repair; customer satisfied."),
    RecordType.VOICEMAIL: ("客户留言，要求回电。", "Left a voicemail asking for a call back."),
}
_OUTCOMES = ("已解决", "Resolved on the call", "已安排工程师", "Technician dispatched", "已退款", "Sent the manual")

_KB_TOPICS = (
    (
        "Washing machine shows error E21",
        "E21 means the water does not drain. Clean the drain filter behind the lower front panel, check that the "
        "drain hose is not kinked, then run a spin cycle.",
        "washer error drain",
    ),
    (
        "洗衣机显示E21错误",
        "E21表示排水故障。请清洁前面板下方的排水过滤器，检查排水管是否弯折，然后运行脱水程序。",
        "洗衣机 故障 排水",
    ),
    (
        "Air conditioner not cooling",
        "Check that the mode is COOL and the set temperature is below the room temperature; clean the air filter; "
        "if the outdoor unit does not start, book a repair.",
        "ac cooling filter",
    ),
    (
        "空调不制冷怎么办",
        "确认模式为制冷且设定温度低于室温；清洗滤网；如室外机不启动，请预约维修。",
        "空调 制冷 滤网",
    ),
    (
        "Water heater: resetting the thermal cut-out",
        "Switch off the power, wait ten minutes, press the red reset button under the cover. If it trips again, "
        "do not reset it a second time: book a repair.",
        "heater reset safety",
    ),
    (
        "热水器不出热水",
        "请检查电源和温度设定；关闭电源十分钟后按复位按钮。如再次跳闸请勿再次复位，请预约维修。",
        "热水器 复位 维修",
    ),
    (
        "Installation booking: what the customer must prepare",
        "A free power socket within one metre, a water inlet for washers, and clear access. Installation takes "
        "about one hour; the technician calls thirty minutes before arriving.",
        "installation booking",
    ),
    (
        "安装预约须知",
        "请准备一米内的电源插座，洗衣机需预留进水口。安装约需一小时，工程师到达前三十分钟会来电。",
        "安装 预约",
    ),
    (
        "Warranty terms",
        "Two years on parts and labour from the date of purchase; five years on compressors and motors. Keep the "
        "invoice: the serial number and the date on it are needed for any claim.",
        "warranty policy",
    ),
    (
        "保修政策",
        "整机保修两年，压缩机和电机保修五年。请保留发票，保修需提供序列号和购买日期。",
        "保修 政策",
    ),
    (
        "Refrigerator is noisy",
        "A humming is normal. Knocking or rattling: check that the fridge stands level and does not touch the wall. "
        "A loud buzz from the back can mean a failing fan: book a repair.",
        "fridge noise",
    ),
    (
        "Handling a complaint",
        "Listen to the end, apologise for the trouble, restate the problem, record it as a complaint with the "
        "customer's words, and give the follow-up date. Escalate to a supervisor when asked.",
        "complaint process",
    ),
)


@dataclass(frozen=True, slots=True)
class SeedOptions:
    customers: int
    products: int = 200
    seed: int = 1
    force: bool = False
    chunk: int = CHUNK
    # The time the data is relative to (contacts in the last years); fixed for reproducible tests.
    now: datetime | None = None

    def __post_init__(self) -> None:
        if self.customers < 0:
            raise ValueError("customers must be 0 or more")
        if not len(DEMO_PRODUCTS) <= self.products <= PRODUCTS_MAX:
            raise ValueError(f"products must be {len(DEMO_PRODUCTS)} to {PRODUCTS_MAX}")
        if self.chunk < 1:
            raise ValueError("chunk must be positive")


@dataclass(slots=True)
class SeedReport:
    customers: int = 0
    phones: int = 0
    contacts: int = 0
    service_records: int = 0
    products: int = 0
    articles: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.customers} customers, {self.phones} phone numbers, {self.contacts} contacts, "
            f"{self.service_records} service records, {self.products} products, {self.articles} articles "
            f"in {self.seconds:.1f} s"
        )


_STATUS_DONE = frozenset({"resolved", "feedback_recorded", "archived"})
_STATUS_ALL = tuple(status.value for status in RecordStatus)
_STATUS_RECENT = ("resolved", "feedback_recorded", "archived")
_BOOKINGS = frozenset({RecordType.REPAIR_BOOKING.value, RecordType.INSTALLATION_BOOKING.value})
_TYPES = tuple(kind.value for kind, _ in _TYPE_WEIGHTS)
_TYPE_CUMULATIVE = tuple(itertools.accumulate(weight for _, weight in _TYPE_WEIGHTS))
_CONTENT_BY_VALUE = {kind.value: texts for kind, texts in _CONTENT.items()}


class _Generator:
    """Makes the rows; all randomness comes from one seeded generator, so a seed always gives the same data.

    Hot code for a million customers: draws use random() directly rather than choice() and randrange().
    """

    def __init__(self, options: SeedOptions, rules: PhoneRules, now: datetime) -> None:
        self.rng = random.Random(options.seed)
        self.random = self.rng.random
        self.rules = rules
        self.cc = rules.country_code
        self.now = now
        self.five_years_ago = now - timedelta(days=5 * 365)
        self.yesterday = now - timedelta(days=1)
        # Numbers already handed out, some of which a later customer shares (a company switchboard, a family).
        self.shared_pool: list[tuple[str, str]] = []

    def pick(self, items: Sequence[T]) -> T:
        return items[int(self.random() * len(items))]

    def below(self, limit: int) -> int:
        return int(self.random() * limit)

    def _mobile(self) -> tuple[str, str]:
        nsn = f"1{self.pick('3456789')}{self.below(10**9):09d}"
        style = self.below(5)
        if style == 0:
            written = nsn
        elif style == 1:
            written = f"+{self.cc} {nsn[:3]} {nsn[3:7]} {nsn[7:]}"
        elif style == 2:
            written = f"{nsn[:3]} {nsn[3:7]} {nsn[7:]}"
        elif style == 3:
            written = f"+{self.cc}{nsn}"
        else:
            written = f"00{self.cc} {nsn}"
        return written, "mobile"

    def _landline(self, area: str) -> tuple[str, str]:
        local = f"{2 + self.below(7)}{self.below(10**7):07d}"
        style = self.below(4)
        if style == 0:
            written = f"0{area}-{local[:4]} {local[4:]}"
        elif style == 1:
            written = f"(0{area}) {local}"
        elif style == 2:
            written = f"+{self.cc} {area} {local[:4]} {local[4:]}"
        else:
            written = f"0{area}{local}"
        return written, "landline"

    def _foreign(self) -> tuple[str, str]:
        return self.pick(_FOREIGN).format(a=self.below(10_000), b=self.below(100)), "mobile"

    def _when(self, after: datetime, before: datetime) -> datetime:
        span = max(1.0, (before - after).total_seconds())
        return after + timedelta(seconds=self.random() * span)

    def customer(self, customer_id: int) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], bool]:
        r, pick = self.random, self.pick
        chinese = r() < 0.7
        city_zh, city_en, area, districts = pick(_CITIES)
        if chinese:
            name = pick(_SURNAMES) + pick(_GIVEN) + (pick(_GIVEN) if r() < 0.67 else "")
            address = f"{city_zh}市{pick(districts)}{pick(_ROADS)}{1 + self.below(998)}号"
        else:
            name = f"{pick(_FIRST_EN)} {pick(_LAST_EN)}"
            address = f"{1 + self.below(998)} {pick(_ROADS_EN)}, {city_en}"
        company = None
        if r() < 0.35:
            if chinese:
                company = f"{city_zh}{pick(_COMPANY_WORDS)}{pick(_COMPANY_KINDS)}"
            else:
                company = f"{pick(_COMPANY_EN)} {pick(_COMPANY_EN_KINDS)}"
        roll = r()
        tier = "vip" if roll < 0.01 else "gold" if roll < 0.10 else "silver" if roll < 0.35 else "standard"
        first = self._when(self.five_years_ago, self.yesterday)
        last = self._when(first, self.now)
        row = {
            "id": customer_id,
            "name": name,
            "name_key": name_key(name),
            "company": company,
            "tier": tier,
            "address": address,
            "notes": pick(_NOTES) if r() < 0.1 else None,
            "account_manager": pick(_MANAGERS) if tier in ("vip", "gold") else None,
            "first_contact": first,
            "last_contact": last,
            "churn_risk": r() < 0.05,
            "created_at": first,
            "updated_at": last,
        }
        phones: list[dict[str, Any]] = []
        keys: set[str] = set()

        def add(number: str, kind: str) -> None:
            key = self.rules.normalize(number)
            if key is not None and key not in keys:
                keys.add(key)
                phones.append({"customer_id": customer_id, "number": number, "normalized": key, "kind": kind})

        count = 1 + (r() < 0.4) + (r() < 0.1)
        for index in range(count):
            if not chinese and index == 0 and r() < 0.15:
                add(*self._foreign())
            elif company is not None and index == count - 1 and r() < 0.5:
                add(*self._landline(area))
            else:
                add(*self._mobile())
        if self.shared_pool and r() < 0.005:
            add(*pick(self.shared_pool))
        elif phones and r() < 0.01 and len(self.shared_pool) < 10_000:
            self.shared_pool.append((phones[0]["number"], phones[0]["kind"]))
        contacts: list[dict[str, Any]] = []
        if company is not None and r() < 0.5:
            for number in range(1, 2 + (r() < 0.33)):
                contacts.append(
                    {
                        "customer_id": customer_id,
                        "name": pick(_SURNAMES) + pick(_GIVEN) if chinese else f"{pick(_FIRST_EN)} {pick(_LAST_EN)}",
                        "role": pick(_ROLES),
                        "phone": self._mobile()[0],
                        "email": f"contact{customer_id}.{number}@example.com",
                    }
                )
        return row, phones, contacts, chinese

    def records(
        self, customer: dict[str, Any], chinese: bool, first_id: int, products: Sequence[str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        r, pick = self.random, self.pick
        roll = r()
        count = 0 if roll < 0.4 else 1 if roll < 0.7 else 2 if roll < 0.85 else 3 + self.below(3)
        records: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        for offset in range(count):
            kind = _TYPES[bisect.bisect(_TYPE_CUMULATIVE, r() * _TYPE_CUMULATIVE[-1])]
            created = self._when(customer["first_contact"], customer["last_contact"])
            age = (self.now - created).days
            if age > 60:
                status = "archived" if r() < 0.9 else "feedback_recorded"
            elif age > 7:
                status = pick(_STATUS_RECENT)
            else:
                status = pick(_STATUS_ALL)
            done = status in _STATUS_DONE
            appointment = None
            if kind in _BOOKINGS:
                appointment = (created + timedelta(days=1 + self.below(7))).replace(
                    hour=pick((9, 10, 14, 15, 16)), minute=0, second=0, microsecond=0
                )
            record_id = first_id + offset
            records.append(
                {
                    "id": record_id,
                    "customer_id": customer["id"],
                    "linkedid": None,
                    "type": kind,
                    "status": status,
                    "content": _CONTENT_BY_VALUE[kind][0 if chinese else 1].format(
                        p=pick(products), n=10 + self.below(89)
                    ),
                    "outcome": pick(_OUTCOMES) if done else None,
                    "feedback": ("满意" if chinese else "Satisfied") if done and status != "resolved" else None,
                    "follow_up": None if done else (created + timedelta(days=7)).date(),
                    "appointment_at": appointment,
                    "assigned_to": None,
                    "created_by": SEED_ACTOR,
                    "caller_number": None,
                    "caller_name": None,
                    "idempotency_key": None,
                    "created_at": created,
                    "updated_at": min(self.now, created + timedelta(hours=1 + self.below(24 * 14)))
                    if done
                    else created,
                }
            )
            # One row saying the record arrived in this state: the seed does not invent the steps between.
            history.append(
                {
                    "record_id": record_id,
                    "at": created,
                    "actor": SEED_ACTOR,
                    "action": "import",
                    "from_status": None,
                    "to_status": status,
                    "changes": None,
                }
            )
        return records, history


def _products(count: int, rng: random.Random) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    taken: set[str] = set()
    demo_categories = {"1001": "Washing machines", "1002": "Air conditioners", "2001": "Water heaters"}
    for product in DEMO_PRODUCTS:
        rows.append(
            {
                "code": product.code,
                "name": product.name,
                "category": demo_categories.get(product.code, "Demo"),
                "price": product.price,
                "availability": product.availability,
                "description": product.spoken.get("en"),
                "spoken_en": product.spoken.get("en"),
                "spoken_zh": product.spoken.get("zh"),
            }
        )
        taken.add(product.code)
    index = 0
    while len(rows) < count:
        category, category_zh = _CATEGORIES[index % len(_CATEGORIES)]
        code = str((index % len(_CATEGORIES) + 1) * 1000 + index // len(_CATEGORIES) + 1)
        index += 1
        if code in taken:
            continue
        taken.add(code)
        base = rng.choice(_PRODUCT_NAMES)
        model = f"{base} {code[-3:]}"
        price = Decimal(rng.randrange(299, 19999)) + Decimal("0.00")
        roll = rng.random()
        availability = "in_stock" if roll < 0.75 else "out_of_stock" if roll < 0.93 else "discontinued"
        singular = category[:-1].lower() if category.endswith("s") else category.lower()
        rows.append(
            {
                "code": code,
                "name": f"{model} {singular}",
                "category": category,
                "price": price,
                "availability": availability,
                "description": f"{model}: {category_zh}, energy class A{'+' * rng.randrange(0, 3)}.",
                "spoken_en": f"Energy class A, {rng.randrange(1, 6)} year warranty." if rng.random() < 0.5 else None,
                "spoken_zh": f"{category_zh}，一级能效，保修{rng.randrange(1, 6)}年。" if rng.random() < 0.5 else None,
            }
        )
    return rows


def _articles(now: datetime) -> list[dict[str, Any]]:
    return [
        {"title": title, "body": body, "tags": tags, "created_at": now, "updated_at": now}
        for title, body, tags in _KB_TOPICS
    ]


def _table(model: type[Base]) -> Table:
    found = model.__table__
    if not isinstance(found, Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return found


async def _count(connection: AsyncConnection, table: Table) -> int:
    return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


async def _max_id(connection: AsyncConnection, table: Table) -> int:
    return int((await connection.execute(select(func.coalesce(func.max(table.c.id), 0)))).scalar_one())


async def _insert(connection: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """A few rows through SQLAlchemy Core (its types convert prices and times)."""
    if rows:
        await connection.execute(insert(table), rows)


def _sqlite_time(value: datetime) -> str:
    # How SQLAlchemy's SQLite DateTime stores a time, here naive UTC as callcenter.db.UtcDateTime keeps it.
    if value.tzinfo is UTC:
        # The generator's own times: the text without its "+00:00", without a conversion.
        return value.isoformat(sep=" ", timespec="microseconds")[:26]
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _sqlite_converter(column: Column[Any]) -> Callable[[Any], Any] | None:
    if isinstance(column.type, UtcDateTime):
        return _sqlite_time
    if isinstance(column.type, Date):
        return date.isoformat
    if isinstance(column.type, Boolean):
        return int
    return None


async def _bulk_insert(
    connection: AsyncConnection, table: Table, rows: list[dict[str, Any]], schema: str | None
) -> None:
    """Many rows straight to the driver, past SQLAlchemy's per-row work: executemany on SQLite, COPY on PostgreSQL.

    Table and column names come from the models, never from input; every value is a bound parameter.
    """
    if not rows:
        return
    columns = list(rows[0])
    if connection.dialect.name == "postgresql":
        # The first statement opens the transaction the COPY then runs in.
        await connection.execute(select(1))
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        records = [tuple(row[name] for name in columns) for row in rows]
        await driver.copy_records_to_table(table.name, records=records, columns=columns, schema_name=schema)
        return
    statement = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"  # noqa: S608
    # Column by column: a column without a conversion costs no call per value.
    series: list[list[Any]] = []
    for name in columns:
        values = [row[name] for row in rows]
        convert = _sqlite_converter(table.c[name])
        if convert is not None:
            values = [None if value is None else convert(value) for value in values]
        series.append(values)
    await connection.exec_driver_sql(statement, list(zip(*series, strict=True)))


async def seed(
    database: Database,
    options: SeedOptions,
    *,
    rules: PhoneRules = DEFAULT_RULES,
    progress: Progress | None = None,
) -> SeedReport:
    """Fills the CRM. SeedRefused when customers exist already and ``options.force`` is not set."""
    started = time.monotonic()
    now = (options.now or utcnow()).astimezone(UTC)
    report = SeedReport()
    customers_t, records_t, products_t = _table(Customer), _table(ServiceRecord), _table(Product)
    articles_t, phones_t, contacts_t = _table(KbArticle), _table(CustomerPhone), _table(Contact)
    history_t = _table(ServiceRecordHistory)

    async with database.engine.begin() as connection:
        existing = await _count(connection, customers_t)
        if existing and not options.force:
            raise SeedRefused(f"the database already has {existing} customers; use --force to add more")
        next_customer = await _max_id(connection, customers_t) + 1
        next_record = await _max_id(connection, records_t) + 1
        known_codes = set((await connection.execute(select(Product.code))).scalars())
        product_rows = [
            row for row in _products(options.products, random.Random(options.seed)) if row["code"] not in known_codes
        ]
        await _insert(connection, products_t, product_rows)
        report.products = len(product_rows)
        if await _count(connection, articles_t) == 0:
            article_rows = _articles(now)
            await _insert(connection, articles_t, article_rows)
            report.articles = len(article_rows)
        names = list((await connection.execute(select(Product.name))).scalars())
        items_t = _table(EvaluationItem)
        if await _count(connection, items_t) == 0:
            positions: dict[str, int] = {}
            item_rows = []
            for name, applies_to in DEFAULT_EVALUATION_ITEMS:
                position = positions[applies_to] = positions.get(applies_to, -1) + 1
                item_rows.append(
                    {
                        "name": name,
                        "applies_to": applies_to.value,
                        "active": True,
                        "position": position,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            await _insert(connection, items_t, item_rows)

    generator = _Generator(options, rules, now)
    done = 0
    while done < options.customers:
        size = min(options.chunk, options.customers - done)
        customer_rows: list[dict[str, Any]] = []
        phone_rows: list[dict[str, Any]] = []
        contact_rows: list[dict[str, Any]] = []
        record_rows: list[dict[str, Any]] = []
        history_rows: list[dict[str, Any]] = []
        for offset in range(size):
            row, phones, contacts, chinese = generator.customer(next_customer + done + offset)
            customer_rows.append(row)
            phone_rows.extend(phones)
            contact_rows.extend(contacts)
            records, history = generator.records(row, chinese, next_record, names)
            next_record += len(records)
            record_rows.extend(records)
            history_rows.extend(history)
        async with database.engine.begin() as connection:
            await _bulk_insert(connection, customers_t, customer_rows, database.schema)
            await _bulk_insert(connection, phones_t, phone_rows, database.schema)
            await _bulk_insert(connection, contacts_t, contact_rows, database.schema)
            await _bulk_insert(connection, records_t, record_rows, database.schema)
            await _bulk_insert(connection, history_t, history_rows, database.schema)
        done += size
        report.customers += size
        report.phones += len(phone_rows)
        report.contacts += len(contact_rows)
        report.service_records += len(record_rows)
        if progress is not None and (done == options.customers or done % PROGRESS_EVERY < size):
            progress(f"{done}/{options.customers} customers ({time.monotonic() - started:.1f} s)")

    if database.dialect == "postgresql":
        # Ids were given explicitly; the sequences must continue after them.
        async with database.engine.begin() as connection:
            for table in (customers_t, records_t):
                following = select(func.coalesce(func.max(table.c.id), 0) + 1).scalar_subquery()
                sequence = func.pg_get_serial_sequence(table.name, "id")
                await connection.execute(select(func.setval(sequence, following, False)))
    report.seconds = time.monotonic() - started
    log.info("seeded %s", report.summary())
    return report
