#if canImport(Glibc)
import Glibc
#endif
import SystemSupport
import Testing

/// Real files in a directory below the package's `.build/tmp` (TMPDIR in `make test`).
@Suite("file helpers (real files)")
struct FilesTests {
    func scratch(_ name: String) throws -> String {
        let base = (processEnvironment()["TMPDIR"] ?? "/tmp") + "/amp-files-\(getpid())-\(name)"
        try removeTree(base)
        try makeDirectories(base)
        return base
    }

    @Test("removeTree removes nested trees and never follows a link out of the tree")
    func removeTreeKeepsLinkTargets() throws {
        let base = try scratch("tree")
        let outside = base + "-outside"
        try makeDirectories(outside)
        try writeFileAtomically(outside + "/keep", Array("kept".utf8), mode: 0o600)
        try makeDirectories(base + "/a/b/c")
        try writeFileAtomically(base + "/a/b/c/file", Array("x".utf8), mode: 0o600)
        #expect(symlink(outside, base + "/a/link") == 0)
        chmod(base + "/a/b", 0o700)
        try removeTree(base)
        #expect(access(base, F_OK) != 0)
        #expect(FileContents.text(outside + "/keep") == "kept", "the link's target survives")
        try removeTree(outside)
        try removeTree(outside)  // missing: not an error
    }

    @Test("removeTree stops at its depth limit with an error naming the path")
    func removeTreeDepthLimit() throws {
        let base = try scratch("deep")
        try makeDirectories(base + "/1/2/3/4")
        #expect(throws: FileError.self) { try removeTree(base, depthLimit: 2) }
        try removeTree(base)
    }

    @Test("writeFileAtomically replaces the content and leaves no temporary file")
    func atomicWrite() throws {
        let base = try scratch("write")
        try writeFileAtomically(base + "/f", Array("one".utf8), mode: 0o600)
        try writeFileAtomically(base + "/f", Array("two".utf8), mode: 0o600)
        #expect(FileContents.text(base + "/f") == "two")
        #expect(listDirectory(base) == ["f"])
        let error = #expect(throws: FileError.self) { try writeFileAtomically(base + "/missing/f", [], mode: 0o600) }
        #expect(error?.description.contains("/missing/f") == true)
        try removeTree(base)
    }
}
