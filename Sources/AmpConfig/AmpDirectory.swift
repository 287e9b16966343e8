#if canImport(Glibc)
import Glibc
import SystemSupport
#endif

/// The amp dir of a project: `BASE/.amp`, holding everything amp keeps for it (IC-1, IC-12).
///
/// ```
/// BASE/.amp/
/// ├── config.toml   optional, found without a flag
/// ├── layout        the layout version that wrote this amp dir (``AmpDirectory/layoutVersion``)
/// ├── ampd.lock     held by the running ampd, or by `ampctl upgrade` (one owner per amp dir)
/// ├── data/  providers/  manifests/
/// ├── metadb/       the PostgreSQL data directory (and its socket, when the path is short enough)
/// └── rollback/     clusters kept by `ampctl upgrade` until `--finish` or `--rollback`
/// ```
public struct AmpDirectory: Sendable, Equatable {
    /// Where the base directory came from.
    public enum Source: String, Sendable {
        case flag = "--amp-dir"
        case environment = "AMP_DIR"
        case workingDirectory = "current directory"
    }

    /// The project directory that contains `.amp`.
    public var base: String
    /// How `base` was chosen.
    public var source: Source

    public init(base: String, source: Source) {
        self.base = base
        self.source = source
    }

    /// `--amp-dir` > `AMP_DIR` > the current working directory. Relative paths are taken
    /// from `workingDirectory`.
    public static func resolve(flag: String?, environment: [String: String], workingDirectory: String) -> AmpDirectory {
        func absolute(_ p: String) -> String { normalizePath(p.hasPrefix("/") ? p : workingDirectory + "/" + p) }
        if let flag, !flag.isEmpty { return AmpDirectory(base: absolute(flag), source: .flag) }
        if let env = environment["AMP_DIR"], !env.isEmpty { return AmpDirectory(base: absolute(env), source: .environment) }
        return AmpDirectory(base: absolute(workingDirectory), source: .workingDirectory)
    }

    /// `BASE/.amp`.
    public var path: String { base == "/" ? "/.amp" : base + "/.amp" }
    public var configFile: String { path + "/config.toml" }
    public var lockFile: String { path + "/ampd.lock" }
    /// The PostgreSQL data directory.
    public var metadb: String { path + "/metadb" }
    public var subdirectories: [String] { ["data", "providers", "manifests", "metadb"].map { path + "/" + $0 } }
    /// Where `ampctl upgrade` keeps the cluster it replaced.
    public var rollbackDirectory: String { path + "/rollback" }
    /// The file recording the layout version.
    public var layoutFile: String { path + "/layout" }

    /// The layout of `.amp` this amp writes and reads. A later amp that changes the layout
    /// migrates older ones forward in ``ensureLayout()``; this one refuses a newer one.
    public static let layoutVersion = 1

    /// The layout version recorded in `.amp/layout`: nil when there is none (an amp dir from
    /// before the file existed is version 1).
    public func recordedLayoutVersion() throws(ConfigError) -> Int? {
        guard let text = FileContents.text(layoutFile, limit: 4096) else { return nil }
        guard let version = Int(text.trimmingWhitespace), version > 0 else {
            throw ConfigError(.ampDirUnusable, "\(layoutFile):1: not a layout version (\(text.trimmingWhitespace.prefix(40))); it holds one number written by amp: restore it, or remove it if this amp dir was made by amp \(Self.layoutVersion)")
        }
        return version
    }

    /// Refuses an amp dir written by a newer amp (a layout version above ``layoutVersion``).
    public func checkLayout() throws(ConfigError) {
        if let version = try recordedLayoutVersion(), version > Self.layoutVersion {
            throw ConfigError(
                .ampDirUnusable,
                "\(path) was written by a newer amp (layout \(version); this amp reads layout \(Self.layoutVersion)); install that amp again (or a newer one), nothing was changed")
        }
    }

    /// The project's name: the base directory's last component.
    public var projectName: String {
        base.split(separator: "/").last.map(String.init) ?? "root"
    }

    /// Creates `.amp` and its subdirectories (0700) where missing; leaves existing ones as they are.
    public func ensureLayout() throws(ConfigError) {
        guard isDirectory(base) else {
            throw ConfigError(
                .ampDirUnusable,
                "project directory \(base) (from \(source.rawValue)) does not exist; create it or pass --amp-dir with an existing directory")
        }
        if isDirectory(path) { try checkLayout() }
        for dir in [path] + subdirectories where !isDirectory(dir) {
            if mkdir(dir, 0o700) != 0 && errno != EEXIST {
                let reason = String(cString: strerror(errno))
                throw ConfigError(.ampDirUnusable, "cannot create \(dir): \(reason); check the permissions of \(base)")
            }
        }
        if (try recordedLayoutVersion()) == nil {
            do {
                // No fsync: a layout file lost in a crash is written again (absence means 1).
                try writeFileAtomically(layoutFile, Array("\(Self.layoutVersion)\n".utf8), mode: 0o600, durable: false)
            } catch {
                throw ConfigError(.ampDirUnusable, "\(error); check the permissions of \(path)")
            }
        }
    }
}

