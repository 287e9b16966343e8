#if canImport(Glibc)
import Glibc
#endif

/// Removes `.` and empty components and trailing slashes, and resolves `..` lexically (no
/// links are followed): `/a/./b/../c/` → `/a/c`. A relative path is taken from `/`.
public func normalizePath(_ path: String) -> String {
    var parts: [Substring] = []
    for component in path.split(separator: "/") {
        if component == "." { continue }
        if component == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
        parts.append(component)
    }
    return "/" + parts.joined(separator: "/")
}

/// The directory part of `path` (`/a/b` → `/a`, `/a` → `/`, `a` → `.`), lexically.
public func parentDirectory(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    if slash == path.startIndex { return "/" }
    return String(path[..<slash])
}

/// The current working directory (`/` if it cannot be read).
public func workingDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buffer, buffer.count) != nil else { return "/" }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// `path` made absolute against the current directory and normalised, without resolving links.
public func absolutePath(_ path: String) -> String {
    normalizePath(path.hasPrefix("/") ? path : workingDirectory() + "/" + path)
}

/// `path` with every symbolic link, `.` and `..` resolved (`realpath(3)`); nil when a
/// component does not exist.
public func realPath(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
}

/// Whether `path` is a directory (following symbolic links).
/// The first executable `name` in the directories of `searchPath` (a `PATH` value), then in
/// `fallbacks` (where a distribution installs it when `PATH` lacks them, `/usr/sbin` among
/// them); nil when there is none.
public func findProgram(_ name: String, searchPath: String?, fallbacks: [String] = []) -> String? {
    let directories = (searchPath ?? "").split(separator: ":").map(String.init) + fallbacks
    return directories.lazy.map { $0 + "/" + name }.first { access($0, X_OK) == 0 }
}

public func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}

/// The names in `directory` (without `.` and `..`); empty when it cannot be read.
public func listDirectory(_ directory: String) -> [String] {
    guard let dir = opendir(directory) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafePointer(to: entry.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// This process's environment as a dictionary.
public func processEnvironment() -> [String: String] {
    var env: [String: String] = [:]
    var p = environ
    while let entry = p.pointee {
        let s = String(cString: entry)
        if let eq = s.firstIndex(of: "=") { env[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
        p += 1
    }
    return env
}

/// `$HOME`, else the passwd entry's home directory; nil when there is neither.
public func userHomeDirectory(environment: [String: String]) -> String? {
    if let h = environment["HOME"], h.hasPrefix("/") { return h }
    guard let pw = getpwuid(getuid()), let dir = pw.pointee.pw_dir else { return nil }
    return String(cString: dir)
}

/// `$XDG_CONFIG_HOME` (when absolute), else `HOME/.config`.
public func userConfigHome(environment: [String: String]) -> String? {
    if let x = environment["XDG_CONFIG_HOME"], x.hasPrefix("/") { return x }
    return userHomeDirectory(environment: environment).map { $0 + "/.config" }
}

/// Why `path` is not a private directory of the user `owner` (default: this process's
/// effective user), or nil when it is one: it must be a real directory (not a symbolic link),
/// owned by `owner`, and reachable by nobody else (no group or other permission bits) — or,
/// with `readableByOthers` (a directory below a private one, such as the 0755 `amp/` that
/// systemd makes for `RuntimeDirectory=`), at least writable by nobody else. A directory
/// another user made — `/tmp/amp-UID` planted with mode 0777 — fails: whoever owns it can
/// swap what is inside.
public func privateDirectoryProblem(_ path: String, owner: uid_t = geteuid(), readableByOthers: Bool = false) -> String? {
    var st = stat()
    guard lstat(path, &st) == 0 else { return "\(path) cannot be examined (\(String(cString: strerror(errno))))" }
    guard (st.st_mode & S_IFMT) == S_IFDIR else {
        return (st.st_mode & S_IFMT) == S_IFLNK ? "\(path) is a symbolic link, not a directory" : "\(path) is not a directory"
    }
    guard st.st_uid == owner else { return "\(path) belongs to UID \(st.st_uid), not to UID \(owner)" }
    guard st.st_mode & (readableByOthers ? 0o022 : 0o077) == 0 else {
        return "\(path) has mode 0\(String(st.st_mode & 0o7777, radix: 8)), not 0700\(readableByOthers ? " (or 0755)" : "")"
    }
    return nil
}

/// What a command reads of the process it runs in — its environment, working directory and
/// clock — as one value, read once at the edge (``current``) and replaceable for the length
/// of a task (`Platform.$current.withValue(…)`), so that tests vary it without changing the
/// process (its environment, its directory) that other tests share.
public struct Platform: Sendable {
    public var environment: [String: String]
    public var workingDirectory: String
    /// Seconds since the epoch.
    public var now: @Sendable () -> Int

    public init(environment: [String: String], workingDirectory: String, now: @escaping @Sendable () -> Int = { Int(time(nil)) }) {
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.now = now
    }

    /// This process's, read now.
    public static func live() -> Platform {
        Platform(environment: processEnvironment(), workingDirectory: SystemSupport.workingDirectory())
    }

    /// The platform commands read: this process's, read at first use, unless a task replaced it.
    @TaskLocal public static var current = Platform.live()
}
