#if canImport(Glibc)
import Glibc
import SystemSupport
#endif

/// Chooses where the server's Unix socket lives.
public enum SocketDirectory {
    /// The longest socket path the kernel accepts: `sizeof(sockaddr_un.sun_path)` less the NUL.
    public static let maximumSocketPathLength = 107

    /// The socket file's path for a directory and port: `DIR/.s.PGSQL.PORT`.
    public static func socketPath(directory: String, port: Int) -> String {
        "\(directory)/.s.PGSQL.\(port)"
    }

    /// The outcome of ``choose(preferred:port:runtimeDirectory:uid:key:)``.
    public struct Choice: Sendable, Equatable {
        /// The directory to pass to `postgres -k`.
        public var directory: String
        /// Why the preferred directory was not used, if it was not.
        public var reason: String?
    }

    /// Uses `preferred` when the socket path fits; otherwise a short private directory under
    /// `$XDG_RUNTIME_DIR/amp/`, or under `/tmp/amp-UID/` as a last resort, named by a hash of
    /// `key` (the data directory) so it stays the same across restarts.
    public static func choose(preferred: String, port: Int, runtimeDirectory: String?, uid: uid_t, key: String) -> Choice {
        let length = socketPath(directory: preferred, port: port).utf8.count
        if length <= maximumSocketPathLength { return Choice(directory: preferred, reason: nil) }
        let name = "pg-" + stableHash(key)
        let reason = "the socket path \(socketPath(directory: preferred, port: port)) is \(length) bytes, "
            + "more than the kernel's limit of \(maximumSocketPathLength)"
        if let runtime = runtimeDirectory, !runtime.isEmpty {
            let candidate = "\(runtime)/amp/\(name)"
            if socketPath(directory: candidate, port: port).utf8.count <= maximumSocketPathLength {
                return Choice(directory: candidate, reason: reason)
            }
        }
        return Choice(directory: "/tmp/amp-\(uid)/\(name)", reason: reason + " (and $XDG_RUNTIME_DIR is unset or too long)")
    }

    /// 64-bit FNV-1a of `text`, as 16 hex digits: stable across runs and builds.
    static func stableHash(_ text: String) -> String { FNV1a.hex(text) }

    /// Creates a fallback directory and checks that nobody else can use it: every component
    /// we create is 0700, and an existing `/tmp/amp-UID` must be a real directory owned by `uid`.
    static func prepare(_ choice: Choice, owner: (uid: uid_t, gid: gid_t)?) throws(PostgresError) {
        guard choice.reason != nil else { return }
        let parent = FileSystem.parentDirectory(choice.directory)
        try FileSystem.makeDirectory(parent, mode: 0o700)
        try FileSystem.makeDirectory(choice.directory, mode: 0o700)
        var st = stat()
        let expectedOwner = owner?.uid ?? geteuid()
        for path in [parent, choice.directory] {
            guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
                throw PostgresError(.dataDirectoryUnusable, "socket directory \(path) is not a directory; remove it")
            }
            if st.st_uid != expectedOwner && st.st_uid != geteuid() {
                throw PostgresError(
                    .dataDirectoryUnusable,
                    "socket directory \(path) belongs to UID \(st.st_uid), not to this user; remove it or set the socket directory")
            }
            if st.st_mode & 0o022 != 0 {
                throw PostgresError(
                    .dataDirectoryUnusable,
                    "socket directory \(path) has mode 0\(String(st.st_mode & 0o7777, radix: 8)), so others could swap the socket; remove it (amp makes it 0700) or set the socket directory")
            }
        }
        if let owner { try FileSystem.chown(choice.directory, to: owner, recursive: false) }
        _ = chmod(choice.directory, 0o700)
    }
}
