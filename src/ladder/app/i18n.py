"""The dashboard's words, in English and Simplified Chinese: one key, both languages, always.

The page is rendered with `t(lang, key)`; what the script writes later
comes from the same table, handed to it in the page, so no string of the
page exists in one language only (a test checks both tables have the same
keys, and that the Chinese page shows none of the English words).
"""

from __future__ import annotations

from ladder.protocol.http1 import preferred_language

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Ladder",
        "nav.link": "Link", "nav.traffic": "Traffic", "nav.sharing": "Sharing", "nav.devices": "Devices",
        "nav.services": "Services", "nav.search": "Search", "nav.credits": "Credits",
        "link.connect": "Connect", "link.disconnect": "Disconnect",
        "link.state": "State", "link.hub": "Hub", "link.since": "Since", "link.proxy": "Proxy",
        "state.up": "connected", "state.down": "reconnecting", "state.connecting": "connecting",
        "state.off": "disconnected", "state.starting": "starting", "state.stopped": "stopped",
        "exits.title": "Exit", "exits.auto": "Automatic (the best exit)", "exits.country": "Country",
        "exits.member": "Member", "exits.latency": "Latency", "exits.load": "Load",
        "exits.rate": "Credits rate", "exits.rate_value": "1 credit per byte", "exits.none": "No exit is online.",
        "exits.use": "Use", "exits.chosen": "in use", "exits.closed": "not open to you",
        "where.title": "Where would this site go?", "where.placeholder": "example.com",
        "where.ask": "Check", "where.direct": "directly, not through Ladder", "where.block": "blocked",
        "where.exit": "through the exit", "where.service": "to a service inside the network",
        "where.rule": "by the rule",
        "traffic.title": "Traffic", "traffic.up": "Up", "traffic.down": "Down",
        "traffic.today": "Today", "traffic.month": "This month",
        "conns.title": "Open connections", "conns.site": "Site", "conns.via": "Via", "conns.rate": "Rate",
        "conns.bytes": "Bytes", "conns.age": "Age", "conns.close": "Close", "conns.none": "No open connections.",
        "conns.direct": "direct", "conns.service": "service",
        "share.title": "Share my connection", "share.on": "Sharing is on", "share.off": "Sharing is off",
        "share.start": "Start sharing", "share.stop": "Stop sharing", "share.country": "Country of this exit",
        "share.paused": "Paused", "share.policy": "Who and what", "share.members": "Members (comma-separated, or everyone)",
        "share.ports": "Ports", "share.rate": "Rate for the whole exit (e.g. 20M)",
        "share.user_rate": "Rate per member (e.g. 5M)", "share.daily_cap": "Daily cap (e.g. 10G)",
        "share.monthly_cap": "Monthly cap (e.g. 200G)", "share.schedule": "Schedule (e.g. 08:00-23:00)",
        "share.metered": "Pause on metered networks", "share.save": "Save", "share.saved": "Saved.",
        "share.users": "Who uses it now", "share.member": "Member", "share.streams": "Streams",
        "share.usage": "Bytes per member", "share.earned": "Credits earned",
        "share.none": "Nobody uses it now.",
        "devices.title": "Devices", "devices.name": "Name", "devices.add": "Add a phone",
        "devices.scan": "Scan this code with the phone's app (sing-box, Clash Meta, Shadowrocket):",
        "devices.online": "online", "devices.offline": "offline", "devices.today": "Today",
        "devices.remove": "Remove", "devices.none": "No devices yet.", "devices.exit": "Exit",
        "services.title": "My services", "services.name": "Name", "services.address": "Local address",
        "services.service_title": "Title", "services.description": "Description",
        "services.publish": "Publish", "services.remove": "Remove", "services.none": "Nothing published.",
        "services.network": "Services in the network", "services.by": "by",
        "services.online": "online", "services.offline": "offline",
        "search.title": "Search the network", "search.placeholder": "Words to search for",
        "search.go": "Search", "search.none": "Nothing found.", "search.offline": "offline",
        "credits.title": "Credits", "credits.balance": "Balance", "credits.earned": "Earned",
        "credits.spent": "Spent", "credits.limit": "Limit", "credits.history": "History",
        "credits.verify": "Verify against the hub's signed log", "credits.verified": "Verified",
        "credits.entries": "entries", "credits.none": "No entries yet.", "credits.load": "Show",
        "credits.with": "With", "credits.when": "When", "credits.amount": "Amount",
        "error": "Error", "working": "Working…", "unit.s": "s", "unit.ms": "ms",
    },
    "zh": {
        "title": "Ladder 梯子",
        "nav.link": "连接", "nav.traffic": "流量", "nav.sharing": "共享", "nav.devices": "设备",
        "nav.services": "服务", "nav.search": "搜索", "nav.credits": "积分",
        "link.connect": "连接", "link.disconnect": "断开",
        "link.state": "状态", "link.hub": "节点", "link.since": "开始于", "link.proxy": "代理",
        "state.up": "已连接", "state.down": "正在重连", "state.connecting": "正在连接",
        "state.off": "已断开", "state.starting": "正在启动", "state.stopped": "已停止",
        "exits.title": "出口", "exits.auto": "自动（最佳出口）", "exits.country": "国家",
        "exits.member": "成员", "exits.latency": "延迟", "exits.load": "负载",
        "exits.rate": "积分费率", "exits.rate_value": "每字节 1 积分", "exits.none": "没有在线的出口。",
        "exits.use": "使用", "exits.chosen": "使用中", "exits.closed": "不对你开放",
        "where.title": "这个网站会怎么走？", "where.placeholder": "example.com",
        "where.ask": "查看", "where.direct": "直连，不经过梯子", "where.block": "已拦截",
        "where.exit": "经由出口", "where.service": "到网络内的服务",
        "where.rule": "依据规则",
        "traffic.title": "流量", "traffic.up": "上传", "traffic.down": "下载",
        "traffic.today": "今天", "traffic.month": "本月",
        "conns.title": "当前连接", "conns.site": "网站", "conns.via": "经由", "conns.rate": "速率",
        "conns.bytes": "字节", "conns.age": "时长", "conns.close": "关闭", "conns.none": "没有打开的连接。",
        "conns.direct": "直连", "conns.service": "服务",
        "share.title": "共享我的网络", "share.on": "共享已开启", "share.off": "共享已关闭",
        "share.start": "开始共享", "share.stop": "停止共享", "share.country": "本出口所在国家",
        "share.paused": "已暂停", "share.policy": "对谁开放、开放什么", "share.members": "成员（用逗号分隔，或 everyone）",
        "share.ports": "端口", "share.rate": "整个出口的速率（如 20M）",
        "share.user_rate": "每位成员的速率（如 5M）", "share.daily_cap": "每日上限（如 10G）",
        "share.monthly_cap": "每月上限（如 200G）", "share.schedule": "时间表（如 08:00-23:00）",
        "share.metered": "按流量计费的网络上暂停", "share.save": "保存", "share.saved": "已保存。",
        "share.users": "正在使用的成员", "share.member": "成员", "share.streams": "连接数",
        "share.usage": "各成员用量", "share.earned": "已赚积分",
        "share.none": "现在没有人使用。",
        "devices.title": "设备", "devices.name": "名称", "devices.add": "添加手机",
        "devices.scan": "用手机上的应用（sing-box、Clash Meta、Shadowrocket）扫描此二维码：",
        "devices.online": "在线", "devices.offline": "离线", "devices.today": "今天",
        "devices.remove": "移除", "devices.none": "还没有设备。", "devices.exit": "出口",
        "services.title": "我的服务", "services.name": "名称", "services.address": "本地地址",
        "services.service_title": "标题", "services.description": "简介",
        "services.publish": "发布", "services.remove": "移除", "services.none": "尚未发布任何服务。",
        "services.network": "网络中的服务", "services.by": "发布者",
        "services.online": "在线", "services.offline": "离线",
        "search.title": "搜索网络", "search.placeholder": "要搜索的词",
        "search.go": "搜索", "search.none": "没有找到结果。", "search.offline": "离线",
        "credits.title": "积分", "credits.balance": "余额", "credits.earned": "已赚",
        "credits.spent": "已用", "credits.limit": "额度", "credits.history": "记录",
        "credits.verify": "对照节点签名的账本核验", "credits.verified": "已核验",
        "credits.entries": "条记录", "credits.none": "还没有记录。", "credits.load": "显示",
        "credits.with": "对方", "credits.when": "时间", "credits.amount": "数量",
        "error": "错误", "working": "处理中…", "unit.s": "秒", "unit.ms": "毫秒",
    },
}


def language(accept: str) -> str:
    return preferred_language(accept, STRINGS)


def t(lang: str, key: str) -> str:
    return STRINGS[lang][key]
