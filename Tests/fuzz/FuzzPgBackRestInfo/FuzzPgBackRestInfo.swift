import AmpBackup

/// libFuzzer target: `pgbackrest info --output=json` as amp reads it (backups, LSNs, times,
/// the WAL range) on any bytes; and pgBackRest options as `[backup] repository` and the
/// environment give them.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPgBackRestInfo(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if case .success(let info) = PgBackRestInfo.parse(text, stanza: "amp") {
        for b in info.backups { _ = b.chain(in: info.backups) }
    }
    let items = text.split(separator: "\n").prefix(64).map(String.init)
    _ = PgBackRest.options(repository: items, environment: ["PGBACKREST_" + (items.first ?? ""): items.last ?? ""], workDirectory: "/w",
                           defaultRepository: "/r", window: Double(size), defaultStanza: "amp")
    return 0
}
