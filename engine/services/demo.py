"""Demo data for trying the service: a user for every role and a few customers, one of them VIP."""
from __future__ import annotations

DEMO_PASSWORD = "kefu-demo"
DEMO_USERS = [
    ("agent", ["agent"], "客服专员 王敏"),
    ("agent2", ["agent"], "客服专员 李娜"),
    ("supervisor", ["supervisor"], "客服主管 张伟"),
    ("department", ["department"], "责任部门 刘强"),
    ("technician", ["technician"], "维修人员 陈刚"),
    ("technician2", ["technician"], "维修人员 赵磊"),
    ("taskforce1", ["taskforce"], "专项小组 孙丽"),
    ("taskforce2", ["taskforce"], "专项小组 周杰"),
    ("qa", ["qa"], "质检 吴芳"),
    ("auditor", ["auditor"], "审计 郑洁"),
    ("owner", ["process_owner"], "流程负责人 何平"),
]
DEMO_CUSTOMERS = [
    {"name": "华东银行股份有限公司", "phone": "021-63210000", "company": "华东银行", "address": "上海市黄浦区中山东一路 18 号",
     "region": "上海", "needs": "营业网点安保与监控维护", "vip": True, "special_note": "重点客户，7×24 小时响应"},
    {"name": "李先生", "phone": "13800138000", "address": "北京市朝阳区建国路 88 号", "region": "北京",
     "needs": "家庭防盗报警系统", "vip": False},
    {"name": "星河物业管理有限公司", "phone": "0755-88886666", "company": "星河物业", "address": "深圳市福田区福华路 1 号",
     "region": "深圳", "needs": "小区门禁与巡逻", "vip": False},
]


def seed_demo(k, password: str | None = DEMO_PASSWORD) -> dict:
    """Demo users for every role (all with ``password``) and a few customers, one of them VIP."""
    k.init()
    users = [k.users.add(n, roles, display_name=d, password=password) for n, roles, d in DEMO_USERS]
    customers = []
    for c in DEMO_CUSTOMERS:
        existing = [x for x in k.customers.find(c["phone"]) if x["phone"] == c["phone"]]
        customers.append(existing[0] if existing else k.customers.create(c, notify=False))  # planned by 'care plan'
    return {"users": users, "password": password, "customers": customers}
