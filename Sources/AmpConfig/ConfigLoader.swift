import AmpTuning
import SystemSupport

/// Reads the configuration layers and combines them.
public enum ConfigLoader {
    /// Keys of the `[postgres]` table (for messages), from ``Setting/all``.
    public static var postgresKeys: [String] { Setting.all.filter { $0.table == "postgres" }.map(\.key) + [Setting.parametersKey] }

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
            guard Setting.tables.contains(key) else {
                warnings.append("\(path):\(entry.line): unknown key '\(key)' ignored (amp reads only the \(Setting.tables.map { "[\($0)]" }.joined(separator: " and ")) tables)")
                continue
            }
            guard case .table(let pg) = entry.value else {
                throw invalid(path, entry.line, key, "must be a table ([\(key)]), not a \(entry.value.typeName)")
            }
            for k in pg.keys {
                guard let e = pg[k] else { continue }
                let name = "\(key).\(k)"
                if key == "postgres", k == Setting.parametersKey {
                    guard case .table(let params) = e.value else {
                        throw invalid(path, e.line, name, "must be a table ([postgres.parameters]), not \(Setting.describe(e.value))")
                    }
                    layer.parameters = try flattenParameters(params, prefix: "", path: path)
                    continue
                }
                guard let setting = Setting.named(k, in: key) else {
                    let known = key == "postgres" ? postgresKeys : Setting.all.filter { $0.table == key }.map(\.key)
                    warnings.append("\(path):\(e.line): unknown key '\(name)' ignored (known: \(known.sorted().joined(separator: ", ")))")
                    continue
                }
                switch setting.parse(toml: e.value, baseDirectory: baseDirectory) {
                case .success(let value): setting.store(value, in: &layer)
                case .failure(let problem): throw invalid(path, e.line, name, problem.phrase ? problem.expectation : "must be \(problem.expectation)")
                }
                if setting == .seed { seedLine = e.line }
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
                throw invalid(path, e.line, key, "must be a string, number or boolean, not \(Setting.describe(e.value))")
            }
            guard isValidParameterName(name) else {
                throw invalid(path, e.line, key, "is not a valid PostgreSQL parameter name")
            }
            out.append(.init(name: name, value: value))
        }
        return out
    }

    /// The environment variables of ``Setting/all`` (each optional; `AMP_PG_INITDB_ARGS` splits
    /// on white space), and `AMP_PG_PARAM_<name>=<value>` per server parameter (`__` in the
    /// name stands for `.`). Relative paths are taken from `workingDirectory`.
    public static func environmentLayer(_ env: [String: String], workingDirectory: String) throws(ConfigError) -> SettingsLayer {
        var layer = SettingsLayer()
        for setting in Setting.all {
            guard let name = setting.variable, let v = env[name] else { continue }
            guard !v.isEmpty else { throw ConfigError(.invalidEnvironment, "environment variable \(name) is empty; unset it or give it a value", key: name) }
            switch setting.parse(text: v, baseDirectory: workingDirectory) {
            case .success(let value): setting.store(value, in: &layer)
            case .failure(let problem):
                throw ConfigError(.invalidEnvironment, "environment variable \(name)=\(v) is not \(problem.expectation); fix it or unset it", key: name)
            }
        }
        for (k, v) in env.sorted(by: { $0.key < $1.key }) where k.hasPrefix(Setting.parameterVariablePrefix) {
            let name = String(k.dropFirst(Setting.parameterVariablePrefix.count)).replacing("__", with: ".")
            guard isValidParameterName(name) else {
                throw ConfigError(.invalidEnvironment, "environment variable \(k) does not name a valid PostgreSQL parameter; use \(Setting.parameterVariablePrefix)<name>=<value>", key: k)
            }
            layer.parameters.append(.init(name: name, value: v))
        }
        return layer
    }

    /// The flag layer: each given flag's text parsed as its ``Setting`` says; relative paths
    /// are taken from `workingDirectory`.
    public static func flagLayer(_ given: [(Setting, String)], parameters: [String], workingDirectory: String) throws(ConfigError) -> SettingsLayer {
        var layer = SettingsLayer()
        for (setting, text) in given {
            let flag = setting.flag ?? setting.key
            switch setting.parse(text: text, baseDirectory: workingDirectory) {
            case .success(let value):
                if case .list(let items) = value, setting.kind == .arguments, let earlier = layer.initdbArgs {
                    layer.initdbArgs = earlier + items
                } else {
                    setting.store(value, in: &layer)
                }
            case .failure(let problem): throw ConfigError(.invalidFlag, "\(flag) \(text): not \(problem.expectation)", key: flag)
            }
        }
        for p in parameters { layer.parameters.append(try parseParameterAssignment(p, flag: Setting.parameterFlag)) }
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
