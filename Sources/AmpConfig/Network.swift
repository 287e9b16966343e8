#if canImport(Glibc)
import Glibc
#endif
import SystemSupport

/// Where the local cluster also listens on TCP (`[postgres] listen`): off unless set.
public enum ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// `"auto"`: 127.0.0.1 on a free port, chosen once and kept in `.amp/network/port`.
    case auto
    /// `"HOST:PORT"`, `"[V6]:PORT"`.
    case address(host: String, port: Int)

    public static let helpText = "\"auto\" or HOST:PORT such as \"127.0.0.1:5433\" or \"[::1]:5433\""

    /// Parses `auto`, `HOST:PORT` or `[IPV6]:PORT` (port 1–65535); nil otherwise. HOST is an
    /// IPv4 or IPv6 address, `localhost`, or `*` (every address).
    public init?(parsing text: String) {
        let t = text.trimmingWhitespace
        if t == "auto" {
            self = .auto
            return
        }
        var host: Substring, portText: Substring
        if t.hasPrefix("[") {
            guard let close = t.firstIndex(of: "]"), t[t.index(after: close)...].hasPrefix(":") else { return nil }
            host = t[t.index(after: t.startIndex)..<close]
            portText = t[t.index(close, offsetBy: 2)...]
            guard Self.isIPv6(String(host)) else { return nil }
        } else {
            guard let colon = t.lastIndex(of: ":"), !t[..<colon].contains(":") else { return nil }
            host = t[..<colon]
            portText = t[t.index(after: colon)...]
            guard host == "localhost" || host == "*" || Self.isIPv4(String(host)) else { return nil }
        }
        guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy(\.isASCII), portText.allSatisfy(\.isNumber),
              let port = Int(portText), (1...65535).contains(port) else { return nil }
        self = .address(host: String(host), port: port)
    }

    /// Whether only this machine can reach it (127.0.0.0/8, ::1, localhost, and `auto`).
    public var isLoopback: Bool {
        switch self {
        case .auto: return true
        case .address(let host, _):
            if host == "localhost" || host == "::1" { return true }
            return Self.isIPv4(host) && host.hasPrefix("127.")
        }
    }

    public var description: String {
        switch self {
        case .auto: return "auto"
        case .address(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }

    static func isIPv4(_ text: String) -> Bool {
        var a = in_addr()
        return inet_pton(AF_INET, text, &a) == 1
    }

    static func isIPv6(_ text: String) -> Bool {
        var a = in6_addr()
        return inet_pton(AF_INET6, text, &a) == 1
    }
}

/// The URL of an external server (`[postgres] url`, `ampctl init --external`): a
/// `postgresql://` or `postgres://` URL with a host and without a password (passwords live in
/// `~/.pgpass`, `pg_service.conf` or amp's credential file, never in the project).
public enum ExternalURL {
    /// Why `url` cannot name an external server, or nil.
    public static func problem(_ url: String) -> String? {
        guard url.hasPrefix("postgresql://") || url.hasPrefix("postgres://") else {
            return "must be a postgresql:// URL such as \"postgresql://app@db.example.com:5432/app?sslmode=verify-full\""
        }
        guard !url.utf8.contains(0), !url.contains("\n"), url.utf8.count <= 4096 else { return "must be one line of at most 4096 bytes" }
        let parts = split(url)
        if parts.userinfo.contains(":") || parts.query.contains(where: { isPasswordKey($0.key) }) {
            return "must not contain a password (it would be stored in the project): put it in ~/.pgpass, or give it once to `ampctl init --external`, which stores it outside the project"
        }
        if parts.hostport.isEmpty && !parts.query.contains(where: { $0.key == "host" || $0.key == "service" }) {
            return "names no host; an external server is reached over the network: postgresql://USER@HOST:PORT/DB"
        }
        return nil
    }

    /// The URL taken apart: the user information (before `@`), `host[:port]`, the path, the
    /// query as written and its parameters (not decoded).
    public static func split(_ url: String) -> (scheme: String, userinfo: String, hostport: String, path: String, rawQuery: String, query: [(key: String, value: String)]) {
        guard let schemeEnd = url.firstRange(of: "://") else { return ("", "", "", "", "", []) }
        let scheme = String(url[..<schemeEnd.lowerBound])
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var userinfo = Substring(""), hostport = authority
        if let at = authority.lastIndex(of: "@") {
            userinfo = authority[..<at]
            hostport = authority[authority.index(after: at)...]
        }
        let tail = rest[authorityEnd...]
        let path = tail.prefix { $0 != "?" }
        let queryText = tail.dropFirst(path.count).dropFirst()
        let query = queryText.split(separator: "&").map { pair -> (key: String, value: String) in
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (String(kv[0]), kv.count > 1 ? String(kv[1]) : "")
        }
        return (scheme, String(userinfo), String(hostport), String(path), String(queryText), query)
    }

    /// `url` without its password (in the user information or a `password=` parameter): what
    /// may be stored or shown; and the password (percent-decoded), when there was one. Anything
    /// that is not a `SCHEME://` URL is returned as it is.
    public static func removingPassword(_ url: String) -> (url: String, password: String?) {
        guard url.contains("://") else { return (url, nil) }
        let parts = split(url)
        var password: String?
        var userinfo = parts.userinfo
        if let colon = userinfo.firstIndex(of: ":") {
            password = percentDecoded(String(userinfo[userinfo.index(after: colon)...]))
            userinfo = String(userinfo[..<colon])
        }
        var query = parts.rawQuery
        if let pair = parts.query.first(where: { isPasswordKey($0.key) }) {
            password = percentDecoded(pair.value)
            query = query.split(separator: "&").filter { !isPasswordKey(String($0.prefix { $0 != "=" })) }.joined(separator: "&")
        }
        var out = parts.scheme + "://" + (userinfo.isEmpty ? "" : userinfo + "@") + parts.hostport + parts.path
        if !query.isEmpty { out += "?" + query }
        return (out, password)
    }

    /// The password as it is written in `url` (still percent-encoded), in the user information
    /// and in a `password=` parameter: what must be redacted besides the decoded form.
    public static func writtenPasswords(_ url: String) -> [String] {
        guard url.contains("://") else { return [] }
        let parts = split(url)
        var out: [String] = []
        if let colon = parts.userinfo.firstIndex(of: ":") { out.append(String(parts.userinfo[parts.userinfo.index(after: colon)...])) }
        out += parts.query.filter { isPasswordKey($0.key) }.map(\.value)
        return out.filter { !$0.isEmpty }
    }

    /// Whether a query parameter's key is libpq's `password` (libpq decodes keys too, so
    /// `pass%77ord` is one).
    static func isPasswordKey(_ key: String) -> Bool { percentDecoded(key) == "password" }

    /// `%xx` decoded (an invalid escape is kept as it is).
    public static func percentDecoded(_ text: String) -> String {
        var bytes: [UInt8] = []
        let u = Array(text.utf8)
        var i = 0
        while i < u.count {
            if u[i] == UInt8(ascii: "%"), i + 2 < u.count, let v = UInt8(String(decoding: u[(i + 1)...(i + 2)], as: UTF8.self), radix: 16) {
                bytes.append(v)
                i += 3
            } else {
                bytes.append(u[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Where amp keeps secrets of a project, outside the project: `$XDG_CONFIG_HOME/amp/`
/// (`~/.config/amp/`), directories 0700, files 0600.
public enum AmpSecrets {
    /// `$XDG_CONFIG_HOME/amp/tcp/NAME.password`: the password of the local cluster's TCP
    /// listener (`[postgres] listen`).
    public static func tcpPasswordFile(project: String, environment: [String: String]) -> String? {
        configDirectory(environment).map { "\($0)/tcp/\(project).password" }
    }

    /// `$XDG_CONFIG_HOME/amp/credentials/NAME.pgpass`: the password of an external server,
    /// as a libpq password file (one `host:port:*:user:password` line), handed to the unit as
    /// the systemd credential ``credentialName`` and to libpq as `passfile`.
    public static func externalPassFile(project: String, environment: [String: String]) -> String? {
        configDirectory(environment).map { "\($0)/credentials/\(project).pgpass" }
    }

    /// amp's password file of the project's external server, when there is one that may be
    /// used: its path, nil when there is none, or why it may not be used (others may read it).
    public static func existingExternalPassFile(project: String, environment: [String: String]) -> Result<String?, SecretProblem> {
        guard let file = externalPassFile(project: project, environment: environment) else { return .success(nil) }
        return read(file).map { $0 == nil ? nil : file }
    }

    /// One line of a libpq password file: `host:port:*:user:password`, with `:` and `\`
    /// escaped (see <https://www.postgresql.org/docs/15/libpq-pgpass.html>).
    public static func passFileLine(host: String, port: String, user: String, password: String) -> String {
        func field(_ s: String) -> String { s.replacing("\\", with: "\\\\").replacing(":", with: "\\:") }
        return [host.isEmpty ? "*" : field(host), port.isEmpty ? "*" : field(port), "*", user.isEmpty ? "*" : field(user), field(password)]
            .joined(separator: ":")
    }

    /// The name of the systemd credential (`LoadCredential=amp-pgpass:…`).
    public static let credentialName = "amp-pgpass"

    static func configDirectory(_ environment: [String: String]) -> String? { userConfigHome(environment: environment).map { $0 + "/amp" } }

    /// Writes a secret file (0600, its directories 0700), atomically.
    public static func write(_ path: String, _ text: String) throws(FileError) {
        try makeDirectories(parentDirectory(path), mode: 0o700)
        try writeFileAtomically(path, Array(text.utf8), mode: 0o600, durable: true)
    }

    /// Reads a secret file: its text, nil when it is missing; an error when others may read it
    /// (a secret that leaked is not used silently) or it cannot be read.
    public static func read(_ path: String) -> Result<String?, SecretProblem> {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            return errno == ENOENT ? .success(nil) : .failure(SecretProblem(message: "\(path): \(String(cString: strerror(errno)))"))
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { return .failure(SecretProblem(message: "\(path) is not a regular file; remove it")) }
        guard st.st_mode & 0o077 == 0 else {
            return .failure(SecretProblem(message: "\(path) may be read by others (mode \(String(st.st_mode & 0o777, radix: 8))); run `chmod 600 \(path)`"))
        }
        guard let text = FileContents.text(path, limit: 64 << 10) else { return .failure(SecretProblem(message: "\(path) cannot be read; check its permissions")) }
        return .success(text)
    }

    public struct SecretProblem: Error, Sendable { public var message: String }

    /// A new random password: 32 characters of [A-Za-z0-9] (~190 bits) from `/dev/urandom`;
    /// nil when that cannot be read.
    public static func generatePassword() -> String? {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)
        let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        while out.count < 32 {
            var buffer = [UInt8](repeating: 0, count: 64)
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, 64) }
            guard n > 0 else { return nil }
            // 62 × 4 = 248: bytes from 248 up are dropped, so every character is equally likely.
            for b in buffer.prefix(n) where b < 248 && out.count < 32 { out.append(alphabet[Int(b) % 62]) }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
