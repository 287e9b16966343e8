import AmpTuning
import SystemSupport

/// Reads the configuration layers and combines them.
public enum ConfigLoader {
    /// Keys of the `[postgres]` table, with their meaning (for messages and docs).
    public static let postgresKeys: [String: String] = [
        "bin_dir": "directory of postgres and initdb",
        "locale": "initdb --locale",
        "encoding": "initdb --encoding",
        "initdb_args": "extra initdb arguments (array of strings)",
        "user": "account PostgreSQL runs as when ampd runs as root",
        "socket_dir": "Unix socket directory",
        "start_timeout": "bound on initdb and start-up (e.g. \"90s\")",
        "stop_timeout": "bound on the fast shutdown (e.g. \"30s\")",
        "template_cache": "copy new clusters from a cached initdb template (true/false)",
        "profile": "dev (default) or durable",
        "memory": "memory budget for sizing, e.g. \"2GB\" (default: cgroup limit, else a share of RAM)",
        "cpus": "CPU count for sizing (default: cgroup quota, affinity, online CPUs)",
        "parameters": "server parameters (table of name = value)",
        "listen": "also listen on TCP: \"auto\" or \"127.0.0.1:5433\" (SCRAM password; off by default)",
        "tls": "TLS on the TCP listener (true/false; required for a non-loopback listen address)",
        "tls_cert": "TLS certificate (PEM) for the TCP listener (default: generated, self-signed)",
        "tls_key": "TLS private key (PEM) for tls_cert",
        "url": "an external PostgreSQL server this project uses instead of a local cluster (postgresql:// URL, no password)",
        "seed": "SQL scripts run once, in order, when the cluster is created (array of paths inside the project, relative to it)",
        "seed_outside_project": "allow seed scripts outside the project directory (true/false; default false)",
    ]

    /// At most this many seed scripts.
    public static let maximumSeedScripts = 100

    /// Reads and parses `config.toml` at `path`: nil when there is none; an error when it
    /// cannot be read, is larger than 1 MiB or is not UTF-8 (naming the line of the first bad
    /// byte), or when ``parseFile(_:path:baseDirectory:)`` finds a problem.
    public static func readFile(path: String, baseDirectory: String) throws(ConfigError) -> (SettingsLayer, [String])? {
        switch FileContents.read(path, limit: 1 << 20) {
        case .missing: return nil
        case .unreadable(let why):
            throw ConfigError(.malformedFile, "\(path): cannot read: \(why); fix its permissions or move it away", file: path)
        case .tooLarge(let limit):
            throw ConfigError(.malformedFile, "\(path): larger than \(limit >> 20) MiB, so not a configuration file amp wrote or expects; shorten it or move it away", file: path)
        case .bytes(let bytes):
            switch decodeUTF8Strictly(bytes) {
            case .success(let text): return try parseFile(text, path: path, baseDirectory: baseDirectory)
            case .failure(let bad):
                throw ConfigError(
                    .malformedFile,
                    "\(path):\(bad.line): not UTF-8 (invalid byte at offset \(bad.offset)); TOML files must be UTF-8: re-save it as UTF-8 (e.g. iconv -t UTF-8)",
                    file: path, line: bad.line)
            }
        }
    }

    /// Parses `config.toml` text. Relative paths in it are taken from `baseDirectory`.
    ///
    /// - Returns: the layer and one warning per unknown key (`FILE:LINE: unknown key …`).
    /// - Throws: ``ConfigError`` naming the file, line and key.
    public static func parseFile(_ text: String, path: String, baseDirectory: String) throws(ConfigError) -> (SettingsLayer, [String]) {
        let document: TOMLTable
        do {
            document = try parseTOML(text)
        } catch {
            throw ConfigError(
                .malformedFile, "\(path):\(error.line): invalid TOML: \(error.message) (column \(error.column)); fix the file or move it away",
                file: path, line: error.line)
        }
        var warnings: [String] = []
        var seedLine = 1
        var layer = SettingsLayer()
        for key in document.keys {
            guard let entry = document[key] else { continue }
            guard key == "postgres" else {
                warnings.append("\(path):\(entry.line): unknown key '\(key)' ignored (amp reads only the [postgres] table)")
                continue
            }
            guard case .table(let pg) = entry.value else {
                throw invalid(path, entry.line, "postgres", "must be a table ([postgres]), not a \(entry.value.typeName)")
            }
            for k in pg.keys {
                guard let e = pg[k] else { continue }
                let name = "postgres.\(k)"
                func string() throws(ConfigError) -> String {
                    guard case .string(let s) = e.value, !s.isEmpty else {
                        throw invalid(path, e.line, name, "must be a non-empty string, not \(describe(e.value))")
                    }
                    return s
                }
                func pathValue() throws(ConfigError) -> String {
                    let s = try string()
                    return normalizePath(s.hasPrefix("/") ? s : baseDirectory + "/" + s)
                }
                func boolean() throws(ConfigError) -> Bool {
                    guard case .boolean(let b) = e.value else {
                        throw invalid(path, e.line, name, "must be true or false, not \(describe(e.value))")
                    }
                    return b
                }
                func duration() throws(ConfigError) -> Duration {
                    switch e.value {
                    case .integer(let n) where n > 0 && n <= 86_400: return .seconds(n)
                    case .string(let s):
                        if let d = parseTimeout(s) { return d }
                    default: break
                    }
                    throw invalid(path, e.line, name, "must be a duration \(SettingBounds.timeoutText) (or whole seconds), not \(describe(e.value))")
                }
                switch k {
                case "bin_dir": layer.binDir = try pathValue()
                case "socket_dir": layer.socketDir = try pathValue()
                case "locale": layer.locale = try string()
                case "encoding": layer.encoding = try string()
                case "user": layer.postgresUser = try string()
                case "start_timeout": layer.startTimeout = try duration()
                case "stop_timeout": layer.stopTimeout = try duration()
                case "profile":
                    let v = try string()
                    guard let profile = Profile(rawValue: v) else { throw invalid(path, e.line, name, "must be \"dev\" or \"durable\", not \"\(v)\"") }
                    layer.profile = profile
                case "memory":
                    let v: String
                    switch e.value {
                    case .string(let s): v = s
                    case .integer(let n): v = "\(n)"
                    default: throw invalid(path, e.line, name, "must be a size \(MemorySize.rangeText), not \(describe(e.value))")
                    }
                    guard let size = MemorySize(parsing: v) else { throw invalid(path, e.line, name, "must be a size \(MemorySize.rangeText), not \"\(v)\"") }
                    layer.memory = size
                case "cpus":
                    guard case .integer(let n) = e.value, SettingBounds.cpus.contains(n) else {
                        throw invalid(path, e.line, name, "must be \(SettingBounds.cpusText), not \(describe(e.value))")
                    }
                    layer.cpus = n
                case "template_cache": layer.templateCache = try boolean()
                case "initdb_args":
                    guard case .array(let items) = e.value else {
                        throw invalid(path, e.line, name, "must be an array of strings such as [\"--data-checksums\"], not \(describe(e.value))")
                    }
                    var args: [String] = []
                    for item in items {
                        guard case .string(let s) = item else {
                            throw invalid(path, e.line, name, "must contain only strings, found \(describe(item))")
                        }
                        args.append(s)
                    }
                    layer.initdbArgs = args
                case "listen":
                    let v = try string()
                    guard let address = ListenAddress(parsing: v) else {
                        throw invalid(path, e.line, name, "must be \(ListenAddress.helpText), not \"\(v)\"")
                    }
                    layer.listen = address
                case "tls": layer.tls = try boolean()
                case "tls_cert": layer.tlsCertificate = try pathValue()
                case "tls_key": layer.tlsKey = try pathValue()
                case "url":
                    let v = try string()
                    if let problem = ExternalURL.problem(v) {
                        // Never echo a URL that may hold a password.
                        throw invalid(path, e.line, name, problem)
                    }
                    layer.externalURL = v
                case "seed":
                    guard case .array(let items) = e.value else {
                        throw invalid(path, e.line, name, "must be an array of paths such as [\"db/schema.sql\", \"db/seed.sql\"], not \(describe(e.value))")
                    }
                    guard items.count <= maximumSeedScripts else { throw invalid(path, e.line, name, "has \(items.count) scripts; at most \(maximumSeedScripts)") }
                    var files: [String] = []
                    for item in items {
                        guard case .string(let s) = item, !s.isEmpty, !s.utf8.contains(0) else {
                            throw invalid(path, e.line, name, "must contain only non-empty paths, found \(describe(item))")
                        }
                        files.append(normalizePath(s.hasPrefix("/") ? s : baseDirectory + "/" + s))
                    }
                    layer.seed = files
                    seedLine = e.line
                case "seed_outside_project": layer.seedOutsideProject = try boolean()
                case "parameters":
                    guard case .table(let params) = e.value else {
                        throw invalid(path, e.line, name, "must be a table ([postgres.parameters]), not \(describe(e.value))")
                    }
                    layer.parameters = try flattenParameters(params, prefix: "", path: path)
                default:
                    warnings.append(
                        "\(path):\(e.line): unknown key '\(name)' ignored (known: \(postgresKeys.keys.sorted().joined(separator: ", ")))")
                }
            }
        }
        if let seeds = layer.seed, layer.seedOutsideProject != true,
           let outside = seeds.first(where: { !isInside($0, directory: normalizePath(baseDirectory)) }) {
            throw invalid(path, seedLine, "postgres.seed", "\(outside) is outside the project directory \(normalizePath(baseDirectory)); move it into the project, or set seed_outside_project = true")
        }
        return (layer, warnings)
    }

    /// Whether the normalised `path` lies below `directory`.
    static func isInside(_ path: String, directory: String) -> Bool {
        directory == "/" || path.hasPrefix(directory + "/")
    }

    /// `[postgres.parameters]`: `name = value`; nested tables (from dotted keys such as
    /// `auto_explain.log_min_duration = "1s"`) become dotted names.
    private static func flattenParameters(_ table: TOMLTable, prefix: String, path: String) throws(ConfigError) -> [AmpSettings.Parameter] {
        var out: [AmpSettings.Parameter] = []
        for k in table.keys {
            guard let e = table[k] else { continue }
            let name = prefix + k
            let key = "postgres.parameters.\(name)"
            let value: String
            switch e.value {
            case .string(let s): value = s
            case .integer(let n): value = String(n)
            case .float(let d): value = String(d)
            case .boolean(let b): value = b ? "on" : "off"
            case .table(let t):
                out += try flattenParameters(t, prefix: name + ".", path: path)
                continue
            default:
                throw invalid(path, e.line, key, "must be a string, number or boolean, not \(describe(e.value))")
            }
            guard isValidParameterName(name) else {
                throw invalid(path, e.line, key, "is not a valid PostgreSQL parameter name")
            }
            out.append(.init(name: name, value: value))
        }
        return out
    }

    /// Environment variables, all optional:
    /// `AMP_PG_BIN_DIR`, `AMP_PG_LOCALE`, `AMP_PG_ENCODING`, `AMP_PG_INITDB_ARGS` (split on
    /// white space), `AMP_PG_USER`, `AMP_PG_SOCKET_DIR`, `AMP_PG_START_TIMEOUT`,
    /// `AMP_PG_STOP_TIMEOUT`, `AMP_PG_TEMPLATE_CACHE` (true/false), and `AMP_PG_PARAM_<name>=<value>` per server parameter
    /// (`__` in the name stands for `.`).
    public static func environmentLayer(_ env: [String: String], workingDirectory: String) throws(ConfigError) -> SettingsLayer {
        var layer = SettingsLayer()
        func value(_ name: String) throws(ConfigError) -> String? {
            guard let v = env[name] else { return nil }
            guard !v.isEmpty else { throw ConfigError(.invalidEnvironment, "environment variable \(name) is empty; unset it or give it a value", key: name) }
            return v
        }
        func path(_ name: String) throws(ConfigError) -> String? {
            try value(name).map { normalizePath($0.hasPrefix("/") ? $0 : workingDirectory + "/" + $0) }
        }
        func duration(_ name: String) throws(ConfigError) -> Duration? {
            guard let v = try value(name) else { return nil }
            guard let d = parseTimeout(v) else {
                throw ConfigError(.invalidEnvironment, "environment variable \(name)=\(v) is not a duration \(SettingBounds.timeoutText)", key: name)
            }
            return d
        }
        layer.binDir = try path("AMP_PG_BIN_DIR")
        layer.socketDir = try path("AMP_PG_SOCKET_DIR")
        layer.locale = try value("AMP_PG_LOCALE")
        layer.encoding = try value("AMP_PG_ENCODING")
        layer.postgresUser = try value("AMP_PG_USER")
        layer.initdbArgs = try value("AMP_PG_INITDB_ARGS").map { $0.split(whereSeparator: \.isWhitespace).map(String.init) }
        layer.startTimeout = try duration("AMP_PG_START_TIMEOUT")
        layer.stopTimeout = try duration("AMP_PG_STOP_TIMEOUT")
        if let v = try value("AMP_PG_PROFILE") {
            guard let profile = Profile(rawValue: v) else {
                throw ConfigError(.invalidEnvironment, "environment variable AMP_PG_PROFILE=\(v) is not a profile; use \(SettingBounds.profileText)", key: "AMP_PG_PROFILE")
            }
            layer.profile = profile
        }
        if let v = try value("AMP_PG_MEMORY") {
            guard let size = MemorySize(parsing: v) else {
                throw ConfigError(.invalidEnvironment, "environment variable AMP_PG_MEMORY=\(v) is not a size \(MemorySize.rangeText)", key: "AMP_PG_MEMORY")
            }
            layer.memory = size
        }
        if let v = try value("AMP_PG_CPUS") {
            guard let n = Int(v), SettingBounds.cpus.contains(n) else {
                throw ConfigError(.invalidEnvironment, "environment variable AMP_PG_CPUS=\(v) is not \(SettingBounds.cpusText)", key: "AMP_PG_CPUS")
            }
            layer.cpus = n
        }
        if let v = try value("AMP_PG_LISTEN") {
            guard let address = ListenAddress(parsing: v) else {
                throw ConfigError(.invalidEnvironment, "environment variable AMP_PG_LISTEN=\(v) is not \(ListenAddress.helpText)", key: "AMP_PG_LISTEN")
            }
            layer.listen = address
        }
        if let v = try value("AMP_PG_TEMPLATE_CACHE") {
            switch v.lowercased() {
            case "1", "true", "yes", "on": layer.templateCache = true
            case "0", "false", "no", "off": layer.templateCache = false
            default:
                throw ConfigError(.invalidEnvironment, "environment variable AMP_PG_TEMPLATE_CACHE=\(v) is not a boolean; use true or false", key: "AMP_PG_TEMPLATE_CACHE")
            }
        }
        for (k, v) in env.sorted(by: { $0.key < $1.key }) where k.hasPrefix("AMP_PG_PARAM_") {
            let name = String(k.dropFirst("AMP_PG_PARAM_".count)).replacing("__", with: ".")
            guard isValidParameterName(name) else {
                throw ConfigError(.invalidEnvironment, "environment variable \(k) does not name a valid PostgreSQL parameter; use AMP_PG_PARAM_<name>=<value>", key: k)
            }
            layer.parameters.append(.init(name: name, value: v))
        }
        return layer
    }

    /// Parses `NAME=VALUE` as given to `-c`/`--set`.
    public static func parseParameterAssignment(_ text: String, flag: String) throws(ConfigError) -> AmpSettings.Parameter {
        guard let eq = text.firstIndex(of: "=") else {
            throw ConfigError(.invalidFlag, "\(flag) \(text): expected NAME=VALUE, e.g. \(flag) work_mem=16MB", key: flag)
        }
        let name = String(text[..<eq]).trimmingWhitespace
        guard isValidParameterName(name) else {
            throw ConfigError(.invalidFlag, "\(flag) \(text): '\(name)' is not a valid PostgreSQL parameter name", key: flag)
        }
        return .init(name: name, value: String(text[text.index(after: eq)...]))
    }

    private static func invalid(_ path: String, _ line: Int, _ key: String, _ problem: String) -> ConfigError {
        ConfigError(.invalidValue, "\(path):\(line): \(key) \(problem); fix the value or remove the line", file: path, line: line, key: key)
    }

    private static func describe(_ value: TOMLValue) -> String {
        switch value {
        case .string(let s): return "the string \"\(s)\""
        case .integer(let n): return "the integer \(n)"
        case .float(let d): return "the float \(d)"
        case .boolean(let b): return "the boolean \(b)"
        default: return "a \(value.typeName)"
        }
    }
}

/// Changes one key of `[postgres]` in `config.toml` text, keeping everything else (comments,
/// order) as it was: the key's line is replaced, or a line is added after the `[postgres]`
/// header, or the table is appended. The result is parsed again before it is returned.
public enum ConfigFileEdit {
    /// `text` with `[postgres] key = "value"`; an error naming the file when amp cannot place it.
    public static func settingPostgresString(_ text: String, key: String, value: String, path: String) throws(ConfigError) -> String {
        let literal = "\"" + value.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"") + "\""
        let line = "\(key) = \(literal)"
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let document: TOMLTable
        do { document = try parseTOML(text) } catch {
            throw ConfigError(.malformedFile, "\(path):\(error.line): invalid TOML: \(error.message); fix the file first", file: path, line: error.line)
        }
        func cannot() -> ConfigError {
            ConfigError(.invalidValue, "\(path): amp cannot place \(key) in this file's [postgres] table; add the line `\(key) = \(literal)` under [postgres] yourself", file: path)
        }
        if let entry = document["postgres"] {
            guard case .table(let table) = entry.value else { throw cannot() }
            if let existing = table[key] {
                let i = existing.line - 1
                guard i >= 0, i < lines.count, lines[i].trimmingWhitespace.hasPrefix(key) else { throw cannot() }
                lines[i] = line
            } else if let header = lines.firstIndex(where: { $0.trimmingWhitespace == "[postgres]" }) {
                lines.insert(line, at: header + 1)
            } else {
                throw cannot()
            }
        } else {
            if let last = lines.last, last.isEmpty { lines.removeLast() }
            if !lines.isEmpty { lines.append("") }
            lines += ["[postgres]", line, ""]
        }
        let result = lines.joined(separator: "\n")
        _ = try ConfigLoader.parseFile(result, path: path, baseDirectory: "/")
        return result
    }
}
