@testable import AmpControl
import AmpConfig
import SystemSupport
import Testing

@Suite("import sources and URLs (pure)")
struct ImportSourceTests {
    @Test func passwordIsTakenOut() {
        let u = SourceURL("postgresql://app:p%40ss%3Aw0rd@db.example:5433/shop?sslmode=require")
        #expect(u.password == "p@ss:w0rd")
        #expect(u.withoutPassword == "postgresql://app@db.example:5433/shop?sslmode=require")
        #expect(u.database == "shop")
        #expect(u.display == "db.example:5433/shop")
        #expect(u.redacted("failed for p@ss:w0rd") == "failed for ****")
    }

    @Test func withoutPasswordOrDatabase() {
        let u = SourceURL("postgres://localhost")
        #expect(u.password == nil && u.database == nil)
        #expect(u.withoutPassword == "postgres://localhost")
        #expect(u.redacted("x") == "x")
        let user = SourceURL("postgresql://app@h/db")
        #expect(user.password == nil && user.withoutPassword == "postgresql://app@h/db")
        #expect(ExternalURL.percentDecoded("a%2") == "a%2", "a broken escape stays as it is")
    }

    @Test func classify() {
        #expect(ImportSource.classify("postgresql://x/y", isDirectory: false, hasTOC: false, head: []) == .server(url: "postgresql://x/y"))
        #expect(ImportSource.classify("/d", isDirectory: true, hasTOC: true, head: []) == .directoryDump(path: "/d"))
        #expect(ImportSource.classify("/f", isDirectory: false, hasTOC: false, head: Array("PGDMP".utf8)) == .customDump(path: "/f"))
        #expect(ImportSource.classify("/f.sql", isDirectory: false, hasTOC: false, head: Array("--\nCR".utf8)) == .sqlScript(path: "/f.sql"))
    }
}

@Suite("branch database names (pure)")
struct BranchDatabaseTests {
    @Test("a name that needed no change is kept; a changed one gets a hash of the real branch")
    func sanitised() {
        #expect(BranchDatabase.name(forBranch: "feat_x") == "br_feat_x")
        #expect(BranchDatabase.name(forBranch: "feature/Login-2") == "br_feature_login_2_" + FNV1a.hex("feature/Login-2").prefix(8))
        #expect(BranchDatabase.name(forBranch: "ünïcode").hasPrefix("br__n_code_"))
    }

    @Test("feat/x, feat_x and Feat-X never share a database (they did: all three were br_feat_x)")
    func distinct() {
        let names = ["feat/x", "feat_x", "Feat-X", "feat-x", "FEAT_X"].map(BranchDatabase.name(forBranch:))
        #expect(Set(names).count == names.count, "\(names)")
        #expect(names.allSatisfy { $0.utf8.count <= 63 && $0.hasPrefix("br_") })
    }

    @Test("long names are cut and hashed: at most 63 bytes, and two long names that share a prefix differ")
    func long() {
        let a = BranchDatabase.name(forBranch: String(repeating: "x", count: 100) + "-a")
        let b = BranchDatabase.name(forBranch: String(repeating: "x", count: 100) + "-b")
        #expect(a.utf8.count <= 63 && b.utf8.count <= 63)
        #expect(a != b)
    }

    @Test func comment() {
        #expect(BranchDatabase.branch(fromComment: "amp branch: feat/x") == "feat/x")
        #expect(BranchDatabase.branch(fromComment: "something else") == nil)
        #expect(BranchDatabase.branch(fromComment: nil) == nil)
    }
}
