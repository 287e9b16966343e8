#if canImport(Glibc)
import Glibc
import SystemSupport
#endif

/// The amp dir of a project: `BASE/.amp`, holding everything amp keeps for it (IC-1, IC-12).
///
/// ```
/// BASE/.amp/
/// ├── config.toml   optional, found without a flag
/// ├── ampd.lock     held by the running ampd (one server per amp dir)
/// ├── data/  providers/  manifests/
/// └── metadb/       the PostgreSQL data directory (and its socket, when the path is short enough)
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
        for dir in [path] + subdirectories where !isDirectory(dir) {
            if mkdir(dir, 0o700) != 0 && errno != EEXIST {
                let reason = String(cString: strerror(errno))
                throw ConfigError(.ampDirUnusable, "cannot create \(dir): \(reason); check the permissions of \(base)")
            }
        }
    }
}

