#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import SystemSupport

/// One registered amp dir: the name of its unit instance (`amp@NAME.service`) and where it is.
public struct RegistryEntry: Sendable, Equatable {
    /// The instance name (``isValidInstanceName(_:)``).
    public var name: String
    /// The project directory that holds `.amp` (absolute).
    public var base: String
    /// Whether it starts with the user's session (`default.target.wants/`).
    public var autostart: Bool
    /// The file the entry was read from, if any.
    public var file: String?

    public init(name: String, base: String, autostart: Bool = false, file: String? = nil) {
        self.name = name
        self.base = base
        self.autostart = autostart
        self.file = file
    }
}

/// A registry entry that could not be used, and why (one line naming the file and the fix).
public struct RegistryProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var message: String
    public var description: String { "\(file): \(message)" }

    public init(file: String, message: String) {
        self.file = file
        self.message = message
    }
}

/// Whether `name` can be a unit instance name for amp: 1–64 characters from `[A-Za-z0-9_.-]`,
/// starting with a letter or digit. (systemd also allows `:` and `\`, which carry escaping
/// meaning in unit names; amp keeps names that need no escaping anywhere.)
public func isValidInstanceName(_ name: String) -> Bool {
    guard let first = name.unicodeScalars.first, name.unicodeScalars.count <= 64 else { return false }
    func alnum(_ c: Unicode.Scalar) -> Bool { c.isASCII && (("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c)) }
    return alnum(first) && name.unicodeScalars.allSatisfy { alnum($0) || $0 == "-" || $0 == "_" || $0 == "." }
}

/// A name for `base` usable as an instance name: its last component with other characters
/// replaced by `-` (e.g. `/home/me/My App` → `My-App`).
public func suggestedInstanceName(forBase base: String) -> String {
    let last = base.split(separator: "/").last.map(String.init) ?? "root"
    var name = String(last.unicodeScalars.map { c -> Character in
        let ok = c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "-" || c == "_" || c == ".")
        return ok ? Character(c) : "-"
    })
    while let f = name.unicodeScalars.first, !(f.isASCII && (f.properties.isAlphabetic || ("0"..."9").contains(f))) {
        name.removeFirst()
    }
    if name.isEmpty { name = "project" }
    return String(name.prefix(64))
}

/// The registry of amp dirs: one small TOML file per entry, `DIR/NAME.toml`, where DIR is
/// `$XDG_CONFIG_HOME/amp/registry` (default `~/.config/amp/registry`):
///
/// ```toml
/// path = "/home/me/src/shop"   # the project directory holding .amp
/// autostart = true             # start with the user's session (default false)
/// ```
///
/// One file per entry means one broken entry never hides the others, and two `ampctl init`
/// runs never race on one file. Files are written atomically (temporary file, `rename`).
public struct Registry: Sendable {
    /// The registry directory.
    public var directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// `$XDG_CONFIG_HOME/amp/registry`, else `$HOME/.config/amp/registry`, else the passwd
    /// home directory's. `nil` when no home directory can be found.
    public static func defaultDirectory(environment: [String: String]) -> String? {
        configHome(environment: environment).map { $0 + "/amp/registry" }
    }

    /// `$XDG_CONFIG_HOME` (when absolute), else `HOME/.config`.
    public static func configHome(environment: [String: String]) -> String? { userConfigHome(environment: environment) }

    /// `$HOME`, else the passwd entry's home directory.
    public static func homeDirectory(environment: [String: String]) -> String? { userHomeDirectory(environment: environment) }

    /// The cluster template cache: `$XDG_CACHE_HOME/amp/templates`, else
    /// `HOME/.cache/amp/templates`.
    public static func templateCacheDirectory(environment: [String: String]) -> String? {
        if let x = environment["XDG_CACHE_HOME"], x.hasPrefix("/") { return x + "/amp/templates" }
        return homeDirectory(environment: environment).map { $0 + "/.cache/amp/templates" }
    }

    /// The file of entry `name`.
    public func file(for name: String) -> String { directory + "/" + name + ".toml" }

    /// Reads every entry. Bad files are reported in `problems` and skipped; a missing
    /// directory is an empty registry. Sorted by name.
    public func load() -> (entries: [RegistryEntry], problems: [RegistryProblem]) {
        var entries: [RegistryEntry] = []
        var problems: [RegistryProblem] = []
        for fileName in listDirectory(directory).sorted() where fileName.hasSuffix(".toml") && !fileName.hasPrefix(".") {
            let path = directory + "/" + fileName
            switch Self.parse(path: path, name: String(fileName.dropLast(5)), text: FileContents.text(path)) {
            case .success(let entry): entries.append(entry)
            case .failure(let problem): problems.append(problem)
            }
        }
        return (entries, problems)
    }

    /// Parses one entry file.
    public static func parse(path: String, name: String, text: String?) -> Result<RegistryEntry, RegistryProblem> {
        func problem(_ message: String) -> Result<RegistryEntry, RegistryProblem> { .failure(RegistryProblem(file: path, message: message)) }
        guard isValidInstanceName(name) else {
            return problem("'\(name)' is not a valid amp name (letters, digits, '-', '_', '.', starting with a letter or digit); rename the file")
        }
        guard let text else { return problem("cannot be read; check its permissions") }
        let table: TOMLTable
        do {
            table = try parseTOML(text)
        } catch {
            return problem("line \(error.line): \(error.message); fix the file or remove it and run `ampctl init` again")
        }
        guard let entry = table["path"] else { return problem("no `path = \"/project/dir\"`; add it or remove the file") }
        guard case .string(let base) = entry.value else {
            return problem("line \(entry.line): path must be a string, found \(entry.value.typeName)")
        }
        if let reason = renderablePathProblem(base) { return problem("line \(entry.line): path \(base): \(reason)") }
        var autostart = false
        if let a = table["autostart"] {
            guard case .boolean(let b) = a.value else {
                return problem("line \(a.line): autostart must be true or false, found \(a.value.typeName)")
            }
            autostart = b
        }
        // Other keys are tolerated: newer amp versions may add some.
        return .success(RegistryEntry(name: name, base: normalizePath(base), autostart: autostart, file: path))
    }

    /// Why `path` cannot be a registered project directory (it must be absolute, and written into
    /// unit files as is), or `nil`.
    public static func renderablePathProblem(_ path: String) -> String? {
        guard path.hasPrefix("/") else { return "not an absolute path; write the full path" }
        if path.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            return "contains control characters, which unit files cannot hold; move the project"
        }
        if path.contains("\"") || path.contains("\\") {
            return "contains a quote or backslash, which amp does not write into unit files; move or rename the project directory"
        }
        return nil
    }

    /// Writes `entry` (atomically), creating the directory (0700) when needed.
    public func write(_ entry: RegistryEntry) throws(RegistryProblem) {
        let path = file(for: entry.name)
        guard isValidInstanceName(entry.name) else {
            throw RegistryProblem(file: path, message: "'\(entry.name)' is not a valid amp name; use letters, digits, '-', '_' and '.'")
        }
        if let reason = Self.renderablePathProblem(entry.base) { throw RegistryProblem(file: path, message: "path \(entry.base): \(reason)") }
        do { try makeDirectories(directory) } catch { throw RegistryProblem(file: path, message: error.description) }
        let text = """
            # amp registry entry: amp@\(entry.name).service runs the amp dir of this project.
            # Written by amp; see amp.registry(5).
            path = \(tomlString(entry.base))
            autostart = \(entry.autostart)

            """
        do { try writeFileAtomically(path, Array(text.utf8), mode: 0o600) } catch { throw RegistryProblem(file: path, message: "cannot write: \(error.reason)") }
    }

    /// Removes entry `name`; `false` when there was none.
    @discardableResult
    public func remove(_ name: String) throws(RegistryProblem) -> Bool {
        let path = file(for: name)
        if unlink(path) == 0 { return true }
        if errno == ENOENT { return false }
        throw RegistryProblem(file: path, message: "cannot remove: \(String(cString: strerror(errno)))")
    }
}

/// A TOML basic string for `text`.
func tomlString(_ text: String) -> String {
    var out = "\""
    for c in text.unicodeScalars {
        switch c {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        default:
            if c.value < 0x20 || c.value == 0x7F {
                let hex = String(c.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(c)
            }
        }
    }
    return out + "\""
}

extension Registry {
    /// The entry whose project directory is `base`, if any.
    public func entry(forBase base: String) -> RegistryEntry? {
        load().entries.first { $0.base == normalizePath(base) }
    }

    /// The name amp uses for the project at `base`: its registry name, else a name derived
    /// from the directory (``suggestedInstanceName(forBase:)``). `ampd` serves its varlink socket
    /// under this name and `ampctl` looks for it there.
    public static func serviceName(forBase base: String, environment: [String: String]) -> String {
        if let dir = defaultDirectory(environment: environment), let e = Registry(directory: dir).entry(forBase: base) {
            return e.name
        }
        return suggestedInstanceName(forBase: base)
    }
}
