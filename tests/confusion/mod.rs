//! The path and header confusion corpus (SPEC §2, GUIDE §4): requests
//! shaped after published auth-proxy bypasses, as raw HTTP/1.1 bytes, each
//! with what the gateway must do with it under [`EXTRA_ROUTES`] on top of
//! the launcher's default routes. `path_confusion` sends them to a real
//! gateway; `explain_agrees` checks `stepgate explain --raw` says the same.
#![allow(dead_code)]

/// Routes the corpus adds to the launcher's defaults: a DELETE-only route
/// (method overrides), a GET-only route (HEAD), a route scoped to one host,
/// a query route, and a shadow route in front of a stricter one.
pub const EXTRA_ROUTES: &str = "
  - name: purge-cache
    action: cache.purge
    match: { methods: [DELETE], path: '/api/cache/[a-z0-9-]+' }
    require: { methods: [token] }
    hold: { mode: challenge }
  - name: export-keys
    action: keys.export
    match: { methods: [GET], path: /admin/keys/export }
    require: { methods: [token] }
    hold: { mode: challenge }
  - name: tenant-admin
    action: tenant.admin
    match: { host: [admin.example], prefix: /tenant }
    require: { methods: [token] }
    hold: { mode: challenge }
  - name: legacy-delete
    action: legacy.delete
    match: { methods: [GET], path: /legacy, query: { action: delete } }
    require: { methods: [token] }
    hold: { mode: challenge }
  - name: items-shadow
    action: items.write
    match: { methods: [POST], prefix: /api/items }
    require: { methods: [token] }
    hold: { mode: shadow }
  - name: item-delete
    action: item.delete
    match: { methods: [DELETE], path: '/api/items/[0-9]+' }
    require: { methods: [token] }
    hold: { mode: challenge }
";

#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// The gateway's own 400 `bad_request`.
    Bad,
    /// 401 `step_up_required` on this route (by name).
    Held(&'static str),
    /// 403 `forbidden` from a `deny: true` route.
    Denied,
    /// 400 from hyper's HTTP/1.1 parser, before the gateway sees anything
    /// (so no JSON body). Kept in the table to show these never get through.
    Unparsed,
    /// Answered by the gateway's own endpoints (whatever the status), never
    /// by the upstream.
    Ours,
    /// Benign controls only: 200 from the upstream, which saw this one
    /// request with this exact target (and the case's method and body).
    Forwarded(&'static str),
}

pub struct Case {
    pub why: &'static str,
    pub method: &'static str,
    pub target: &'static [u8],
    /// `None` sends `Host: localhost`; `Some("")` sends no Host at all.
    pub host: Option<&'static str>,
    pub headers: &'static [(&'static str, &'static str)],
    pub body: &'static [u8],
    pub expect: Expect,
}

pub const fn case(why: &'static str, method: &'static str, target: &'static [u8], expect: Expect) -> Case {
    Case {
        why,
        method,
        target,
        host: None,
        headers: &[],
        body: b"",
        expect,
    }
}

impl Case {
    pub const fn headers(mut self, h: &'static [(&'static str, &'static str)]) -> Case {
        self.headers = h;
        self
    }
    pub const fn body(mut self, b: &'static [u8]) -> Case {
        self.body = b;
        self
    }
    pub const fn host(mut self, h: &'static str) -> Case {
        self.host = Some(h);
        self
    }
}

pub fn action_of(route: &str) -> &'static str {
    match route {
        "delete-user" => "user.delete",
        "console" => "console.settings",
        "purge-cache" => "cache.purge",
        "export-keys" => "keys.export",
        "tenant-admin" => "tenant.admin",
        "legacy-delete" => "legacy.delete",
        "item-delete" => "item.delete",
        other => panic!("no action known for route {other}"),
    }
}

/// Request bytes built by hand: `common::request` always sends
/// `Host: localhost` and takes the target as text, and several cases need
/// another Host or bytes that are not UTF-8.
pub fn bytes_of(c: &Case, session: &str) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(c.method.as_bytes());
    r.push(b' ');
    r.extend_from_slice(c.target);
    r.extend_from_slice(b" HTTP/1.1\r\n");
    match c.host.unwrap_or("localhost") {
        "" => {}
        host => r.extend_from_slice(format!("host: {host}\r\n").as_bytes()),
    }
    r.extend_from_slice(b"connection: close\r\n");
    r.extend_from_slice(format!("cookie: SESSIONID={session}\r\n").as_bytes());
    for (k, v) in c.headers {
        r.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if !c.body.is_empty() || c.method == "POST" {
        r.extend_from_slice(format!("content-length: {}\r\n", c.body.len()).as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(c.body);
    r
}

use Expect::{Bad, Denied, Held, Ours, Unparsed};

const DELETE_USER: Expect = Held("delete-user");
const CONSOLE: Expect = Held("console");
const PURGE: Expect = Held("purge-cache");
const LEGACY: Expect = Held("legacy-delete");
const ITEM_DELETE: Expect = Held("item-delete");

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

const MULTIPART: &[u8] = b"--XyZ\r\n\
content-disposition: form-data; name=\"note\"\r\n\r\n\
cleanup\r\n\
--XyZ\r\n\
Content-Disposition: form-data; name=\"_method\"\r\n\r\n\
DELETE\r\n\
--XyZ--\r\n";

#[rustfmt::skip]
pub fn table() -> Vec<Case> {
    vec![
        // --- the plain path, so a broken route table fails loudly here
        case("baseline", "POST", b"/admin/users/bob/delete", DELETE_USER),
        // --- dot segments, raw and encoded
        case("dot-dot", "POST", b"/public/../admin/users/bob/delete", DELETE_USER),
        case("single dot", "POST", b"/admin/./users/bob/./delete", DELETE_USER),
        case("%2e%2e", "POST", b"/public/%2e%2e/admin/users/bob/delete", DELETE_USER),
        case(".%2E", "POST", b"/public/.%2E/admin/users/bob/delete", DELETE_USER),
        case("%2E.", "POST", b"/public/%2E./admin/users/bob/delete", DELETE_USER),
        case("dot segment at the end", "POST", b"/admin/users/bob/delete/.", DELETE_USER),
        case("dot-dot back into the route", "POST", b"/admin/users/bob/x/../delete", DELETE_USER),
        case("dot-dot above root", "POST", b"/../admin/users/bob/delete", Bad),
        case("encoded dot-dot above root", "POST", b"/public/%2e%2e/%2e%2e/admin/users/bob/delete", Bad),
        // --- encoded separators and backslashes
        case("%2F", "POST", b"/admin%2Fusers/bob/delete", Bad),
        case("%2f lower-case", "POST", b"/admin/users/bob%2fdelete", Bad),
        case("%5C", "POST", b"/admin%5Cusers%5Cbob%5Cdelete", Bad),
        case("%5c after dot-dot", "POST", b"/public/..%5cadmin/users/bob/delete", Bad),
        case("raw backslash", "POST", b"/public\\..\\admin/users/bob/delete", Bad),
        case("..%2f traversal", "POST", b"/public/..%2fadmin/users/bob/delete", Bad),
        // --- ;params: matched with and without them
        case(";params on the first segment", "POST", b"/admin;x=1/users/bob/delete", DELETE_USER),
        case(";jsessionid", "POST", b"/admin/users/bob;jsessionid=1/delete", DELETE_USER),
        case(";params at the end", "POST", b"/admin/users/bob/delete;.css", DELETE_USER),
        case("empty segment with params", "POST", b"/;x/admin/users/bob/delete", DELETE_USER),
        case("encoded %3B params", "POST", b"/admin%3Bx=1/users/bob/delete", DELETE_USER),
        case("/..;/ (Tomcat)", "POST", b"/public/..;/admin/users/bob/delete", Bad),
        case("/.;/", "POST", b"/admin/.;/users/bob/delete", Bad),
        // --- slashes
        case("double slashes", "POST", b"//admin//users///bob//delete", DELETE_USER),
        case("trailing slash", "POST", b"/admin/users/bob/delete/", DELETE_USER),
        case("trailing double slash", "DELETE", b"/admin/users/bob//", DELETE_USER),
        // --- case folding on the case-insensitive route
        case("upper case", "GET", b"/ADMIN/SETTINGS/x", CONSOLE),
        case("mixed case prefix only", "POST", b"/Admin/Settings", CONSOLE),
        case("encoded upper-case letter", "GET", b"/%41DMIN/settings/mail", CONSOLE),
        case("upper case behind dot-dot", "GET", b"/x/../ADMIN/SETTINGS/", CONSOLE),
        // --- case folding is the default: routes that never asked for it
        case("default route, upper case", "POST", b"/ADMIN/USERS/bob/DELETE", DELETE_USER),
        case("default route, mixed case", "DELETE", b"/Admin/Users/bob", DELETE_USER),
        case("default route, encoded upper case", "POST", b"/%41dmin/users/bob/delete", DELETE_USER),
        case("deny route, upper case", "GET", b"/ADMIN/SQL/run", Denied),
        case("deny route, mixed case with params", "POST", b"/Admin;x/Sql", Denied),
        case("method-scoped route, upper case", "DELETE", b"/API/Cache/all", PURGE),
        case("host route, upper-case prefix", "GET", b"/TENANT/1", Held("tenant-admin")).host("admin.example"),
        // --- encoded unreserved characters are decoded before matching
        case("%61dmin", "POST", b"/%61dmin/users/bob/delete", DELETE_USER),
        case("every letter encoded", "POST", b"/%61%64%6d%69%6e/users/bob/%64elete", DELETE_USER),
        case("encoded deny prefix", "GET", b"/admin/%73ql/run", Denied),
        // --- double encoding
        case("%252e%252e", "POST", b"/public/%252e%252e/admin/users/bob/delete", Bad),
        case("%252f", "POST", b"/admin%252fusers/bob/delete", Bad),
        case("%25 then an encoded hex digit", "POST", b"/admin/%25%32f/users/bob/delete", Bad),
        // --- NUL and control characters
        case("%00", "POST", b"/admin/users/bob/delete%00.html", Bad),
        case("%0a", "POST", b"/admin/users/bob%0a/delete", Bad),
        case("%0d", "GET", b"/admin/settings%0d", Bad),
        case("%7f", "POST", b"/admin/users/bob/delete%7f", Bad),
        case("%09", "GET", b"/admin/sql%09/run", Bad),
        // --- malformed escapes
        case("lone %", "POST", b"/admin/users/bob/delete%", Bad),
        case("one hex digit", "POST", b"/admin/users/bob/delete%2", Bad),
        case("non-hex digits", "POST", b"/admin/users/%zzbob/delete", Bad),
        // --- invalid UTF-8 after decoding
        case("%ff", "POST", b"/admin/users/%ff/delete", Bad),
        case("overlong dot %c0%ae", "POST", b"/public/%c0%ae%c0%ae/admin/users/bob/delete", Bad),
        case("truncated sequence", "POST", b"/admin/users/bob%e2%82/delete", Bad),
        case("raw non-ASCII byte", "POST", b"/admin/users/b\xffb/delete", Unparsed),
        case("IIS %u escape", "POST", b"/admin/users/bob/%u0064elete", Bad),
        // --- fragment inside the target
        case("fragment after the path", "POST", b"/admin/users/bob/delete#x", DELETE_USER),
        // --- deny route, through the same confusions
        case("deny: plain", "GET", b"/admin/sql", Denied),
        case("deny: dot-dot", "GET", b"/public/../admin/sql/run", Denied),
        case("deny: ;params", "GET", b"/admin;a=b/sql;c=d/run", Denied),
        case("deny: double slash", "POST", b"//admin//sql", Denied),
        // --- absolute-form targets: matched on their path and authority
        case("absolute-form https", "POST", b"https://localhost/admin/users/bob/delete", DELETE_USER),
        case("absolute-form http", "DELETE", b"http://localhost/admin/users/bob", DELETE_USER),
        case("absolute-form upper-case authority", "POST", b"https://LOCALHOST/public/../admin/users/bob/delete", DELETE_USER),
        case("absolute-form without Host", "POST", b"https://localhost/admin/users/bob/delete", DELETE_USER).host(""),
        case("absolute-form authority disagrees with Host", "POST", b"https://elsewhere.example/admin/users/bob/delete", Bad),
        case("absolute-form other port", "POST", b"https://localhost:8443/admin/users/bob/delete", Bad),
        case("absolute-form authority picks the host route", "GET", b"https://admin.example/tenant/1", Held("tenant-admin")).host("admin.example"),
        // --- host-scoped route
        case("host route", "GET", b"/tenant/1", Held("tenant-admin")).host("admin.example"),
        case("host route, upper case and port", "GET", b"/tenant/1", Held("tenant-admin")).host("ADMIN.example:443"),
        // A fully qualified name: nginx, Django and most vhost lookups drop
        // the trailing dot, so this is the same host to the upstream.
        case("host route, trailing dot", "GET", b"/tenant/1", Held("tenant-admin")).host("admin.example."),
        case("host route, trailing dot and port", "GET", b"/tenant/1", Held("tenant-admin")).host("Admin.Example.:443"),
        case("absolute-form, trailing dot", "GET", b"https://admin.example./tenant/1", Held("tenant-admin")).host("admin.example."),
        case("two Host headers", "POST", b"/admin/users/bob/delete", Bad).headers(&[("host", "other.example")]),
        // --- Host values an upstream reads as admin.example (nginx picks the
        // vhost, Express's req.hostname drops the rest): refused, never
        // compared as strings that miss the host route
        case("Host with a non-numeric port", "GET", b"/tenant/1", Bad).host("admin.example:abc"),
        case("Host with two ports", "GET", b"/tenant/1", Bad).host("admin.example:1:2"),
        case("Host with a comma list", "GET", b"/tenant/1", Bad).host("admin.example,x"),
        case("Host list of two names", "GET", b"/tenant/1", Bad).host("a.example,admin.example"),
        case("Host with port 0", "GET", b"/tenant/1", Bad).host("admin.example:0"),
        case("Host with port 65536", "GET", b"/tenant/1", Bad).host("admin.example:65536"),
        case("Host with an empty port", "GET", b"/tenant/1", Bad).host("admin.example:"),
        case("Host with a space", "GET", b"/tenant/1", Bad).host("admin.example x"),
        case("Host with an empty label", "GET", b"/tenant/1", Bad).host("admin..example"),
        case("Host with a percent escape", "GET", b"/tenant/1", Bad).host("admin%2Eexample"),
        case("Host with a path", "GET", b"/tenant/1", Bad).host("admin.example/x"),
        case("empty Host", "GET", b"/tenant/1", Bad).host(" "),
        case("no Host at all", "GET", b"/tenant/1", Bad).host(""),
        case("Host with an odd port on a pathless route", "POST", b"/admin/users/bob/delete", Bad).host("localhost:abc"),
        case("absolute-form with a non-numeric port", "GET", b"http://admin.example:abc/tenant/1", Bad).host("admin.example:abc"),
        case("absolute-form with two ports", "GET", b"http://admin.example:1:2/tenant/1", Unparsed).host("admin.example:1:2"),
        case("absolute-form with a comma", "GET", b"http://admin.example,x/tenant/1", Bad).host("admin.example,x"),
        case("Host with an IPv6 literal and junk", "GET", b"/tenant/1", Bad).host("[::1]x"),
        case("Host with userinfo", "POST", b"/admin/users/bob/delete", Bad).host("user@localhost"),
        // --- method overrides on a DELETE-only route
        case("override: plain DELETE", "DELETE", b"/api/cache/all", PURGE),
        case("X-HTTP-Method-Override", "POST", b"/api/cache/all", PURGE).headers(&[("X-HTTP-Method-Override", "DELETE")]),
        case("X-HTTP-Method", "POST", b"/api/cache/all", PURGE).headers(&[("X-HTTP-Method", "DELETE")]),
        case("X-Method-Override", "POST", b"/api/cache/all", PURGE).headers(&[("X-Method-Override", "DELETE")]),
        case("override in lower case", "POST", b"/api/cache/all", PURGE).headers(&[("x-http-method-override", "delete")]),
        // Express's method-override takes the first of a comma-separated list
        // (and Node joins repeated headers with commas).
        case("override list", "POST", b"/api/cache/all", PURGE).headers(&[("X-HTTP-Method-Override", "DELETE, GET")]),
        case("override list with trailing comma", "POST", b"/api/cache/all", PURGE).headers(&[("X-Method-Override", "delete,")]),
        case("_method in the query", "POST", b"/api/cache/all?_method=DELETE", PURGE),
        case("encoded _method in the query", "GET", b"/api/cache/all?%5Fmethod=delete", PURGE),
        case("_method in a form body", "POST", b"/api/cache/all", PURGE).headers(&[FORM]).body(b"a=1&_method=DELETE"),
        case("_method in a form body with charset", "POST", b"/api/cache/all", PURGE).headers(&[("content-type", "Application/X-WWW-Form-Urlencoded; charset=utf-8")]).body(b"_method=delete"),
        // Rack reads a POST without Content-Type as a form, and Rack and PHP
        // read `_method` from multipart forms too; Express's qs parser turns
        // `_method[]=X` into ['X'] and method-override takes the first.
        case("_method in a body without Content-Type", "POST", b"/api/cache/all", PURGE).body(b"_method=DELETE"),
        case("_method in a multipart form", "POST", b"/api/cache/all", PURGE).headers(&[("content-type", "multipart/form-data; boundary=XyZ")]).body(MULTIPART),
        case("bracketed _method[] in a form body", "POST", b"/api/cache/all", PURGE).headers(&[FORM]).body(b"_method%5B%5D=DELETE"),
        // Laravel makes a JSON body its request bag, and Express's
        // method-override reads req.body whatever parsed it.
        case("_method in a JSON body", "POST", b"/api/cache/all", PURGE).headers(&[("content-type", "application/json")]).body(br#"{"ids":[1],"_method":"DELETE"}"#),
        case("_method array in a +json body", "POST", b"/api/cache/all", PURGE).headers(&[("content-type", "application/vnd.api+json")]).body(br#"{"_method":["delete"]}"#),
        // --- an override behind an earlier, weaker route: matched under
        // both methods, the stricter outcome (the DELETE hold) applies
        case("override past a shadow route", "POST", b"/api/items/9", ITEM_DELETE).headers(&[("X-HTTP-Method-Override", "DELETE")]),
        case("X-HTTP-Method past a shadow route", "POST", b"/api/items/9", ITEM_DELETE).headers(&[("X-HTTP-Method", "delete")]),
        case("X-Method-Override past a shadow route", "POST", b"/api/items/9", ITEM_DELETE).headers(&[("X-Method-Override", "DELETE")]),
        case("_method query past a shadow route", "POST", b"/api/items/9?_method=DELETE", ITEM_DELETE),
        case("_method after ; past a shadow route", "POST", b"/api/items/9?x=1;_method=DELETE", ITEM_DELETE),
        case("_METHOD query past a shadow route", "POST", b"/api/items/9?_METHOD=delete", ITEM_DELETE),
        case("_method form past a shadow route", "POST", b"/api/items/9", ITEM_DELETE).headers(&[FORM]).body(b"name=x&_method=DELETE"),
        case("_method multipart past a shadow route", "POST", b"/api/items/9", ITEM_DELETE).headers(&[("content-type", "multipart/form-data; boundary=XyZ")]).body(MULTIPART),
        case("_method JSON past a shadow route", "POST", b"/api/items/9", ITEM_DELETE).headers(&[("content-type", "application/json")]).body(br#"{"_method":"DELETE"}"#),
        case("override past a shadow route, upper-case path", "POST", b"/API/Items/9", ITEM_DELETE).headers(&[("X-HTTP-Method-Override", "DELETE")]),
        // --- request methods in lower case: Django, Flask and Symfony
        // upper-case the method before routing, so `delete` is DELETE there
        case("lower-case DELETE", "delete", b"/api/cache/all", PURGE),
        case("lower-case POST", "post", b"/admin/users/bob/delete", DELETE_USER),
        case("mixed-case DELETE", "DeLeTe", b"/admin/users/bob", DELETE_USER),
        // --- HEAD is matched as GET
        case("HEAD on a GET route", "HEAD", b"/admin/keys/export", Held("export-keys")),
        case("HEAD through dot-dot", "HEAD", b"/public/../admin/keys/export/", Held("export-keys")),
        case("lower-case HEAD", "head", b"/admin/keys/export", Held("export-keys")),
        // Rack accepts `_method=HEAD`, and Rails and Express route a HEAD to
        // the GET handler (running it, dropping only the body).
        case("override to HEAD on a GET route", "POST", b"/admin/keys/export", Held("export-keys")).headers(&[("X-HTTP-Method-Override", "HEAD")]),
        case("_method=head on a GET route", "POST", b"/admin/keys/export?_method=head", Held("export-keys")),
        // --- query predicates see every reading: Rack splits on `;` too
        // (and drops spaces after it), ASP.NET folds names, and any copy of
        // a repeated parameter may be the one the upstream reads
        case("query: plain", "GET", b"/legacy?action=delete", LEGACY),
        case("query: after a ;", "GET", b"/legacy?x=1;action=delete", LEGACY),
        case("query: before a ;", "GET", b"/legacy?action=delete;x=1", LEGACY),
        case("query: ; between two copies", "GET", b"/legacy?action=view;action=delete", LEGACY),
        case("query: name in upper case", "GET", b"/legacy?ACTION=delete", LEGACY),
        case("query: name in mixed case", "GET", b"/legacy?Action=delete", LEGACY),
        case("query: encoded name", "GET", b"/legacy?%61ction=delete", LEGACY),
        case("query: encoded upper-case name after ;", "GET", b"/legacy?x=1;%41ction=delete", LEGACY),
        case("query: first copy", "GET", b"/legacy?action=delete&action=view", LEGACY),
        case("query: last copy", "GET", b"/legacy?action=view&action=delete", LEGACY),
        case("query: path in other case too", "GET", b"/LEGACY?Action=delete", LEGACY),
        case("query: HEAD", "HEAD", b"/legacy?x;action=delete", LEGACY),
        // --- the gateway's own prefix, in any case: an upstream routing
        // without regard to case would serve `/.STEPUP/` as `/.stepup/`
        case("prefix: upper case", "GET", b"/.STEPUP/jwks.json", Ours),
        case("prefix: mixed case", "POST", b"/.StepUp/holds/abc/complete", Ours),
        case("prefix: bare, upper case", "GET", b"/.STEPUP", Ours),
        case("prefix: upper case with params", "GET", b"/.STEPUP;x/holds", Ours),
        case("prefix: encoded dot, upper case", "GET", b"/%2ESTEPUP/jwks.json", Ours),
        case("prefix: behind dot-dot, mixed case", "GET", b"/x/../.sTePuP/nope", Ours),
        // --- headers with underscores
        case("underscore assertion header", "GET", b"/public", Bad).headers(&[("X_StepUp_Assertion", "x")]),
        case("underscore on a sensitive route", "POST", b"/admin/users/bob/delete", Bad).headers(&[("X_Original_URL", "/public")]),
        case("underscore forwarding header", "GET", b"/public", Bad).headers(&[("x_forwarded_for", "10.0.0.1")]),
        // --- headers that legacy frameworks route on do not change the match
        case("X-Original-URL on a sensitive path", "POST", b"/admin/users/bob/delete", DELETE_USER).headers(&[("X-Original-URL", "/public")]),
        // --- targets that are not paths
        case("CONNECT authority-form", "CONNECT", b"localhost:443", Bad),
    ]
}

/// Requests that look like the table's but are not sensitive: each must
/// reach the upstream, with exactly the target given.
#[rustfmt::skip]
pub fn benign() -> Vec<Case> {
    use Expect::Forwarded as To;
    vec![
        case("plain", "GET", b"/public", To("/public")),
        // The query is not part of the path: the upstream must get it as
        // a query on /public, never as a path.
        case("path-like query", "GET", b"/public?/admin/users/bob/delete", To("/public?/admin/users/bob/delete")),
        case("dot-dot in the query", "POST", b"/public?x=/../admin/users/bob/delete", To("/public?x=/../admin/users/bob/delete")),
        // A browser never sends a fragment; if one is sent anyway it is
        // dropped, not re-read as part of the path.
        case("path-like fragment", "GET", b"/public#/../admin/users/bob/delete", To("/public")),
        case("canonical form is forwarded", "GET", b"/public/./a/../b//c", To("/public/b/c")),
        case("unreserved escapes decoded", "GET", b"/%7Euser/%41bc", To("/~user/Abc")),
        case("method-scoped route, other method", "GET", b"/admin/users/bob", To("/admin/users/bob")),
        case("anchored regex", "POST", b"/admin/users/bob/deleted", To("/admin/users/bob/deleted")),
        case("prefix ends at a segment", "GET", b"/admin/settings-backup", To("/admin/settings-backup")),
        case("deny prefix ends at a segment", "GET", b"/admin/sqlite", To("/admin/sqlite")),
        case("DELETE-only route, POST without override", "POST", b"/api/cache/all", To("/api/cache/all")),
        // This body is read up front to look for `_method`; it must still
        // arrive whole.
        case("form body without _method", "POST", b"/api/cache/all", To("/api/cache/all")).headers(&[FORM]).body(b"a=1&method=DELETE"),
        case("multipart body without _method", "POST", b"/api/cache/all", To("/api/cache/all")).headers(&[("content-type", "multipart/form-data; boundary=XyZ")]).body(b"--XyZ\r\ncontent-disposition: form-data; name=\"method\"\r\n\r\nDELETE\r\n--XyZ--\r\n"),
        case("JSON body without _method", "POST", b"/api/cache/all", To("/api/cache/all")).headers(&[("content-type", "application/json")]).body(br#"{"method":"DELETE"}"#),
        case("a longer name than the gateway's prefix", "GET", b"/.STEPUPX/a", To("/.STEPUPX/a")),
        case("shadow route, no override", "POST", b"/api/items/9", To("/api/items/9")),
        case("shadow route, form without _method", "POST", b"/api/items/9", To("/api/items/9")).headers(&[FORM]).body(b"name=x&method=DELETE"),
        case("shadow route, override to its own method", "POST", b"/api/items/9", To("/api/items/9")).headers(&[("X-HTTP-Method-Override", "POST")]),
        case("query route, other value", "GET", b"/legacy?action=view;x=delete", To("/legacy?action=view;x=delete")),
        case("query route, value in the name", "GET", b"/legacy?x=action%3Ddelete", To("/legacy?x=action%3Ddelete")),
        case("host route, other host", "GET", b"/tenant/1", To("/tenant/1")).host("other.example"),
        case("host with a port", "GET", b"/tenant/1", To("/tenant/1")).host("other.example:8443"),
        case("IPv4 host", "GET", b"/tenant/1", To("/tenant/1")).host("127.0.0.1:1"),
        case("IPv6 host", "GET", b"/tenant/1", To("/tenant/1")).host("[::1]:65535"),
    ]
}
