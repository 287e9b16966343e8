import AmpPostgres

/// libFuzzer target: PostgreSQL's log lines (prefix, severity, SQLSTATE, continuation lines)
/// as the log reader assembles them, on any bytes split into lines; pgaudit's entries in them.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPostgresLog(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    var assembler = PostgresLogAssembler()
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    for entry in assembler.feed(lines) {
        _ = entry.announcesRecovery
        _ = DiskSpace.indicatesFull([entry.text])
        _ = AuditRecord(message: entry.message)
    }
    // pgaudit's format on its own, too (the prefix is rare in random lines).
    _ = AuditRecord(message: "AUDIT: " + text)
    _ = assembler.feed([])
    return 0
}
