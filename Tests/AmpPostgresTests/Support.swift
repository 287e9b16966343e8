#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import Testing
import FoundationEssentials

/// A temporary directory removed when the test ends (reverse order of creation).
final class TemporaryDirectory: @unchecked Sendable {
    let path: String

    init(_ prefix: String = "amp-test") {
        var template = Array("/tmp/\(prefix).XXXXXX".utf8CString)
        let made: UnsafeMutablePointer<CChar>? = template.withUnsafeMutableBufferPointer { buf in buf.baseAddress.flatMap { mkdtemp($0) } }
        path = made.map { String(cString: $0) } ?? "/tmp/\(prefix)-failed"
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }
}

func readFile(_ path: String) -> String? {
    FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
}

/// Writes `text` to `path` in place. (FileManager.createFile writes "atomically" through a
/// /tmp/TemporaryDirectory.* that corelibs-foundation leaves behind: tests must leave nothing.)
func writeFile(_ path: String, _ text: String) {
    guard let f = fopen(path, "w") else { return }
    _ = text.utf8CString.withUnsafeBufferPointer { fwrite($0.baseAddress, 1, $0.count - 1, f) }
    fclose(f)
}

/// Skips tests that start PostgreSQL when running as root (PostgreSQL refuses root; `make test`
/// runs the suite as an unprivileged account) — with the reason printed.
let notRoot = ConditionTrait.enabled(
    if: geteuid() != 0, "PostgreSQL refuses to run as root: run the suite with `make test`, which uses an unprivileged account")

/// Every test that starts a server gets a quiet builder in a fresh directory.
func builder(_ dir: TemporaryDirectory, name: String = "data") -> PostgresBuilder {
    PostgresBuilder(dataDirectory: dir.file(name)).startTimeout(.seconds(60)).stopTimeout(.seconds(20))
}

func query(_ server: PostgresServer, _ sql: String) throws -> [String?] {
    try LibPQ.query(server.handle.conninfo, sql)
}
