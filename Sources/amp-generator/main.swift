#if canImport(Glibc)
import Glibc
#endif
import AmpRegistry

// The systemd user generator: thin; everything is in AmpRegistry.Generator.
var environment: [String: String] = [:]
var entry = environ
while let e = entry.pointee {
    let s = String(cString: e)
    if let eq = s.firstIndex(of: "=") { environment[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
    entry += 1
}
exit(Generator.main(arguments: Array(CommandLine.arguments.dropFirst()), environment: environment))
