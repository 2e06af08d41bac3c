// swift-tools-version: 6.2
// parml: a CPU training engine shipped as libparml.so (C ABI).
// Modules follow the layers of DESIGN.md; dependencies point down only:
//   Parml (C ABI) → ParmlSerialization → ParmlTraining → ParmlModel, ParmlData, ParmlParallel → ParmlTensor
//   Parml (C ABI) → ParmlMPI → ParmlParallel: the MPI backend, which Parml registers as a
//   WorldBackend (ParmlParallel) before it builds a trainer; ParmlTraining never sees MPI.
//   Parml (C ABI), ParmlTraining → ParmlPrivacy: the DP accountant, arithmetic with no other
//   dependency (the trainer reports the epsilon its DP-SGD steps spend).
import Foundation
import PackageDescription

let root = Context.packageDirectory

// <mpi.h> (Open MPI, Debian's libopenmpi-dev) for the MPI shim's types and
// prototypes; libmpi itself is loaded at run time (pml_mpi.h says why), so
// nothing links it. Debian keeps the header under /usr/lib/<multiarch>/
// openmpi/include (what `pkg-config --cflags ompi-c` prints);
// PARML_MPI_INCLUDE overrides the search.
let mpiInclude: String? = {
    if let dir = ProcessInfo.processInfo.environment["PARML_MPI_INCLUDE"], !dir.isEmpty { return dir }
    let libDirs = ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib")) ?? []).sorted()
    let candidates = libDirs.map { "/usr/lib/\($0)/openmpi/include" } + ["/usr/include/openmpi", "/usr/local/include"]
    return candidates.first { FileManager.default.fileExists(atPath: "\($0)/mpi.h") }
}()

// Numeric kernels are written over unsafe pointers with their own bounds
// reasoning; -Ounchecked drops the remaining overflow/bounds traps in release.
let engineSwift: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release)),
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "parml",
    products: [
        // The product users see: libparml.so, exporting only parml_* symbols.
        .library(name: "parml", type: .dynamic, targets: ["Parml"]),
    ],
    targets: [
        // MARK: - Public API

        // The C ABI: @c functions only (handles, status codes, argument checks).
        .target(
            name: "Parml",
            dependencies: ["CParmlTypes", "ParmlTraining", "ParmlSerialization", "ParmlMPI", "ParmlPrivacy"],
            exclude: ["exports.map"],
            swiftSettings: engineSwift + [
                // The raw header Swift writes for the @c functions; tools/gen_header.py
                // turns it into the committed include/parml.h.
                .unsafeFlags(["-emit-clang-header-path", "\(root)/.build/parml-swift.h"]),
            ],
            linkerSettings: [
                .unsafeFlags([
                    "-Xlinker", "--version-script=\(root)/Sources/Parml/exports.map",
                    // SONAME carries the ABI major version only (docs/ABI.md); it must
                    // equal libparml.so.<PARML_VERSION_MAJOR>, which `make check-abi` checks.
                    "-Xlinker", "-soname=libparml.so.0",
                    "-static-stdlib",
                ]),
            ]
        ),
        // Hand-written C types the header generator cannot express.
        .target(name: "CParmlTypes", path: "Sources/CParmlTypes"),

        // MARK: - Engine

        // Files: protobuf-c messages (proto/parml.proto) ↔ engine types.
        .target(name: "ParmlSerialization", dependencies: ["CParmlProto", "ParmlTraining", "_CParmlCrypto"], swiftSettings: engineSwift),
        .target(name: "ParmlTraining", dependencies: ["ParmlModel", "ParmlData", "ParmlParallel", "ParmlPrivacy"], swiftSettings: engineSwift),
        .target(name: "ParmlParallel", dependencies: ["ParmlTensor"], swiftSettings: engineSwift),
        // The MPI backend of the Communicator (one rank per process), a WorldBackend.
        .target(name: "ParmlMPI", dependencies: ["ParmlParallel", "_CParmlMPI"], swiftSettings: engineSwift),
        .target(name: "ParmlModel", dependencies: ["ParmlTensor", "_CParmlKernels"], swiftSettings: engineSwift),
        .target(name: "ParmlData", dependencies: ["ParmlTensor", "CZlib"], swiftSettings: engineSwift),
        .target(name: "ParmlTensor", dependencies: ["_CParmlBLAS", "_CParmlDNNL", "_CParmlKernels"], swiftSettings: engineSwift),
        // Differential-privacy accounting (RDP of the sampled Gaussian mechanism): pure Swift, no dependencies.
        .target(name: "ParmlPrivacy", swiftSettings: engineSwift),

        // MARK: - Implementation details

        // OpenBLAS loaded with dlopen after choosing its kernels (see blas_loader.c).
        .target(name: "_CParmlBLAS", linkerSettings: [.linkedLibrary("dl")]),
        // oneDNN loaded with dlopen on first convolution (see pml_dnnl.h); its headers
        // type the calls, nothing links it.
        .target(name: "_CParmlDNNL", linkerSettings: [.linkedLibrary("dl")]),
        // OpenSSL's libcrypto loaded with dlopen for HMAC-SHA-256 (see pml_crypto.h);
        // nothing links it and no OpenSSL header is needed to build.
        .target(name: "_CParmlCrypto", linkerSettings: [.linkedLibrary("dl")]),
        // Open MPI loaded with dlopen on first use (see pml_mpi.h).
        .target(
            name: "_CParmlMPI",
            cSettings: mpiInclude.map { [.unsafeFlags(["-I\($0)"])] } ?? [],
            linkerSettings: [.linkedLibrary("dl")]),
        // Element-wise loops compiled per ISA (target_clones); see pml_kernels.h.
        // -fno-math-errno: sqrtf may not set errno, so Adam's update
        // vectorizes (vsqrtps, the same correctly rounded result); with
        // errno it ran one float at a time (the GPT's update: 2.30 ms, now 0.67).
        .target(name: "_CParmlKernels", cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        // Code protoc-c generates from proto/ (`make proto`), and a bounded unpack.
        // Hidden: the generated parml__* functions are not part of the ABI (exports.map
        // exports parml_*, which would match them).
        .target(
            name: "CParmlProto", cSettings: [.unsafeFlags(["-fvisibility=hidden"])],
            linkerSettings: [.linkedLibrary("protobuf-c"), .linkedLibrary("z")]),

        // MARK: - Benchmarks (not tests)

        .target(name: "ParmlBenchSupport", dependencies: ["ParmlModel"], path: "bench/support", swiftSettings: engineSwift),
        .executableTarget(
            name: "ParmlBenchCollectives", dependencies: ["ParmlParallel", "ParmlBenchSupport"], path: "bench/collectives",
            swiftSettings: engineSwift),
        .executableTarget(
            name: "ParmlBenchMPI", dependencies: ["ParmlMPI", "ParmlBenchSupport"], path: "bench/mpi", swiftSettings: engineSwift),
        .executableTarget(
            name: "ParmlBenchMPITrain", dependencies: ["ParmlTraining", "ParmlMPI", "ParmlBenchSupport"], path: "bench/mpi_train",
            swiftSettings: engineSwift),
        .executableTarget(
            name: "ParmlBenchGenerate", dependencies: ["ParmlModel", "ParmlBenchSupport"], path: "bench/generate",
            swiftSettings: engineSwift),
        .executableTarget(
            name: "ParmlBenchCNN", dependencies: ["ParmlTraining", "ParmlParallel", "ParmlBenchSupport"], path: "bench/cnn", swiftSettings: engineSwift),
        .executableTarget(
            name: "ParmlBenchPipeline", dependencies: ["ParmlTraining", "ParmlBenchSupport"], path: "bench/pipeline",
            swiftSettings: engineSwift),
        .executableTarget(
            name: "ParmlBenchGPT", dependencies: ["ParmlTraining", "ParmlParallel", "ParmlBenchSupport"], path: "bench/gpt",
            swiftSettings: engineSwift),

        // MARK: - Tests run under mpirun (tests/mpi/run_mpi_tests.sh)

        .executableTarget(
            name: "ParmlMPISelfTest", dependencies: ["ParmlMPI"], path: "tests/mpi/selftest", swiftSettings: engineSwift),

        // MARK: - Unit test bundles

        .target(name: "_ParmlTestSupport", dependencies: ["ParmlTensor"], path: "Tests/_ParmlTestSupport"),

        .testTarget(name: "ParmlTensorTests", dependencies: ["ParmlTensor", "_ParmlTestSupport"]),
        .testTarget(name: "ParmlModelTests", dependencies: ["ParmlModel", "_ParmlTestSupport"]),
        .testTarget(name: "ParmlDataTests", dependencies: ["ParmlData", "_ParmlTestSupport"]),
        // ParmlMPI: a test registers the MPI backend to check how an MPI trainer refuses a host not under mpirun.
        .testTarget(name: "ParmlTrainingTests", dependencies: ["ParmlTraining", "ParmlMPI", "_ParmlTestSupport"]),
        .testTarget(name: "ParmlParallelTests", dependencies: ["ParmlParallel"]),
        .testTarget(name: "ParmlPrivacyTests", dependencies: ["ParmlPrivacy"]),
        .testTarget(
            name: "ParmlSerializationTests",
            dependencies: ["ParmlSerialization", "ParmlTraining", "ParmlData", "_ParmlTestSupport", "CParmlProto", "CZlib"]),
    ]
)
