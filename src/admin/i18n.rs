//! The page's two languages: English by default, 中文 when the browser asks for it
//! (`Accept-Language` starting with `zh`), and either by the switch on the page
//! (`?lang=en|zh`, remembered in a `lang` cookie). One [`Words`] per language, so a
//! missing translation is a compile error, not a blank.

/// A page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// `en` or `zh` (query, cookie and `<html lang>`).
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    /// Parses `en` / `zh` (as the switch and the cookie spell them).
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The language for a request: the switch (`?lang=`), else the cookie, else the
    /// browser's first preference (`zh`, `zh-CN`, `zh-Hans-CN;q=0.9` ... are Chinese).
    pub fn choose(query: Option<&str>, cookie: Option<&str>, accept: Option<&str>) -> Lang {
        if let Some(l) = query
            .and_then(Lang::parse)
            .or_else(|| cookie.and_then(Lang::parse))
        {
            return l;
        }
        let first = accept
            .unwrap_or("")
            .trim_start()
            .get(..2)
            .unwrap_or("")
            .to_ascii_lowercase();
        if first == "zh" {
            Lang::Zh
        } else {
            Lang::En
        }
    }

    /// The page's words.
    pub fn words(self) -> &'static Words {
        match self {
            Lang::En => &EN,
            Lang::Zh => &ZH,
        }
    }
}

/// Every text on the page, in one language.
pub struct Words {
    pub title: &'static str,
    pub accounts: &'static str,
    pub address: &'static str,
    pub provider: &'static str,
    pub servers: &'static str,
    pub last_login: &'static str,
    pub not_recorded: &'static str,
    pub check_now: &'static str,
    pub check_result: &'static str,
    pub listeners: &'static str,
    pub protocol: &'static str,
    pub security: &'static str,
    pub min_tls: &'static str,
    pub lockouts: &'static str,
    pub no_lockouts: &'static str,
    pub host: &'static str,
    pub time_left: &'static str,
    pub unlock: &'static str,
    pub queue: &'static str,
    pub queue_off: &'static str,
    pub queue_empty: &'static str,
    pub age: &'static str,
    pub size: &'static str,
    pub recipients: &'static str,
    pub attempts: &'static str,
    pub last_error: &'static str,
    pub next_attempt: &'static str,
    pub retry: &'static str,
    pub retry_all: &'static str,
    pub delete: &'static str,
    pub login: &'static str,
    pub password: &'static str,
    pub logout: &'static str,
    pub login_needed: &'static str,
    pub login_failed: &'static str,
    pub locked_out: &'static str,
    pub busy: &'static str,
    pub done: &'static str,
    pub requested: &'static str,
    pub plain: &'static str,
    pub starttls: &'static str,
    pub starttls_required: &'static str,
    pub implicit_tls: &'static str,
    pub auto: &'static str,
    pub ok: &'static str,
    pub devices: &'static str,
    pub no_activity: &'static str,
    pub client: &'static str,
    pub user: &'static str,
    pub last_seen: &'static str,
    pub messages: &'static str,
    pub failures: &'static str,
    pub recent: &'static str,
    pub all: &'static str,
    pub failures_only: &'static str,
    pub time: &'static str,
    pub result: &'static str,
    pub bytes: &'static str,
    pub chart: &'static str,
}

/// English.
static EN: Words = Words {
    title: "qqmail-proxy status",
    accounts: "Accounts",
    address: "Address",
    provider: "Provider",
    servers: "Upstream servers",
    last_login: "Last upstream login",
    not_recorded: "not recorded yet",
    check_now: "Check now",
    check_result: "Last check",
    listeners: "Listeners",
    protocol: "Protocol",
    security: "Security",
    min_tls: "Minimum TLS",
    lockouts: "Locked-out addresses",
    no_lockouts: "None.",
    host: "Address",
    time_left: "Time left",
    unlock: "Unlock",
    queue: "Queue",
    queue_off: "Off: messages are relayed at once ([smtp] delivery = \"relay\").",
    queue_empty: "Empty.",
    age: "Age",
    size: "Size",
    recipients: "Recipients",
    attempts: "Attempts",
    last_error: "Last error",
    next_attempt: "Next attempt",
    retry: "Retry",
    retry_all: "Retry all",
    delete: "Delete",
    login: "Log in",
    password: "Password",
    logout: "Log out",
    login_needed: "This page needs the [admin] password off this machine.",
    login_failed: "Wrong password.",
    locked_out: "Too many failed logins from this address: try again later.",
    busy: "Busy: try again in a moment.",
    done: "Done.",
    requested: "Requested: the server applies it within a few seconds.",
    plain: "plain",
    starttls: "STARTTLS (optional)",
    starttls_required: "STARTTLS (required)",
    implicit_tls: "implicit TLS",
    auto: "auto (TLS or plain)",
    ok: "OK",
    devices: "Devices (last 7 days)",
    no_activity: "Nothing yet.",
    client: "Client",
    user: "User",
    last_seen: "Last seen",
    messages: "Messages",
    failures: "Failures",
    recent: "Recent activity",
    all: "All",
    failures_only: "Failures only",
    time: "Time",
    result: "Result",
    bytes: "Bytes in / out",
    chart: "Messages and failures per hour (last 24 hours)",
};

/// 中文.
static ZH: Words = Words {
    title: "qqmail-proxy 状态",
    accounts: "账户",
    address: "地址",
    provider: "服务商",
    servers: "上游服务器",
    last_login: "最近一次上游登录",
    not_recorded: "尚无记录",
    check_now: "立即检查",
    check_result: "最近一次检查",
    listeners: "监听端口",
    protocol: "协议",
    security: "加密方式",
    min_tls: "最低 TLS 版本",
    lockouts: "已锁定的地址",
    no_lockouts: "无。",
    host: "地址",
    time_left: "剩余时间",
    unlock: "解锁",
    queue: "发送队列",
    queue_off: "未启用：邮件直接转发（[smtp] delivery = \"relay\"）。",
    queue_empty: "队列为空。",
    age: "已等待",
    size: "大小",
    recipients: "收件人",
    attempts: "尝试次数",
    last_error: "最近错误",
    next_attempt: "下次尝试",
    retry: "重试",
    retry_all: "全部重试",
    delete: "删除",
    login: "登录",
    password: "密码",
    logout: "退出",
    login_needed: "从其他机器访问本页需要 [admin] 密码。",
    login_failed: "密码错误。",
    locked_out: "此地址登录失败次数过多，请稍后再试。",
    busy: "服务器繁忙，请稍后再试。",
    done: "已完成。",
    requested: "已提交：服务器将在几秒内处理。",
    plain: "明文",
    starttls: "STARTTLS（可选）",
    starttls_required: "STARTTLS（必需）",
    implicit_tls: "SSL/TLS（隐式）",
    auto: "自动（TLS 或明文）",
    ok: "成功",
    devices: "设备（最近 7 天）",
    no_activity: "暂无记录。",
    client: "客户端",
    user: "用户",
    last_seen: "最近出现",
    messages: "邮件数",
    failures: "失败数",
    recent: "最近活动",
    all: "全部",
    failures_only: "仅失败",
    time: "时间",
    result: "结果",
    bytes: "收 / 发字节",
    chart: "每小时邮件与失败数（最近 24 小时）",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_choice() {
        let cases = [
            // (query, cookie, Accept-Language, expected)
            (None, None, None, Lang::En),
            (None, None, Some("en-US,en;q=0.9"), Lang::En),
            (None, None, Some("zh-CN,zh;q=0.9"), Lang::Zh),
            (None, None, Some("ZH"), Lang::Zh),
            (None, None, Some("zh-Hant-TW"), Lang::Zh),
            (None, None, Some("de,zh;q=0.5"), Lang::En),
            (None, None, Some("z"), Lang::En),
            (None, None, Some("中文"), Lang::En),
            (None, Some("zh"), Some("en"), Lang::Zh),
            (Some("en"), Some("zh"), Some("zh-CN"), Lang::En),
            (Some("zh"), None, None, Lang::Zh),
            (Some("fr"), Some("xx"), Some("zh"), Lang::Zh),
        ];
        for (query, cookie, accept, want) in cases {
            assert_eq!(
                Lang::choose(query, cookie, accept),
                want,
                "{query:?} {cookie:?} {accept:?}"
            );
        }
    }
}
