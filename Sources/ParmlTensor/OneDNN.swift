import Glibc
import _CParmlDNNL

/// How `conv2d` computes: oneDNN's primitives (the default: faster on the
/// demo's shapes, docs/cnn.md) or im2col + OpenBLAS sgemm. A layer made
/// while PARML_CONV is `im2col` or `onednn` takes that; where oneDNN cannot
/// load or refuses a shape, convolution runs im2col.
public enum ConvolutionBackend: String, Sendable {
    case im2col
    case onednn

    /// What a new layer takes: $PARML_CONV when it names a backend, else oneDNN.
    public static var configured: ConvolutionBackend {
        guard let v = getenv("PARML_CONV") else { return .onednn }
        return ConvolutionBackend(rawValue: String(cString: v)) ?? .onednn
    }
}

/// A C shim's NUL-terminated message in `buffer`, as text.
func cMessage(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// What a shim's plan-making function returns, given an error buffer; a
/// NULL result throws `.blas` with the message it wrote.
func shimPlan(_ create: (UnsafeMutablePointer<CChar>?, Int) -> OpaquePointer?) throws -> OpaquePointer {
    var err = [CChar](repeating: 0, count: 512)
    guard let made = err.withUnsafeMutableBufferPointer({ create($0.baseAddress, $0.count) }) else {
        throw ParmlError.blas(cMessage(err))
    }
    return made
}

/// oneDNN (libdnnl.so.2), loaded on first use; see pml_dnnl.h.
public enum OneDNN {
    /// Why oneDNN cannot be used in this process (nil once it loaded); the
    /// one load attempt runs here, thread-safely.
    public static let loadError: String? = {
        var err = [CChar](repeating: 0, count: 512)
        let rc = err.withUnsafeMutableBufferPointer { pml_dnnl_load($0.baseAddress, $0.count) }
        return rc == 0 ? nil : cMessage(err)
    }()

    public static var available: Bool { loadError == nil }
    /// Tests: the calling thread's OpenMP thread count as oneDNN's libgomp
    /// has it (-1 unless oneDNN loaded). parml's calls into oneDNN set it
    /// for their own duration only, so a host's setting (PyTorch's, where
    /// it shares that libgomp) survives them.
    static var callingThreadOpenMPThreads: Int { Int(pml_dnnl_omp_threads()) }
    /// "2.6.3 (OpenMP)" once loaded.
    public static var version: String { _ = available; return String(cString: pml_dnnl_version()) }
}

/// One convolution shape's oneDNN primitives (forward, backward data and
/// weights), made once and run on parml's NCHW arrays. Used by one thread
/// at a time.
public final class ConvolutionPlan {
    /// The geometry and thread count it was made for.
    public struct Key: Equatable, Sendable {
        public let batch: Int, height: Int, width: Int, threads: Int
        /// x, w and dy rounded to bf16 on their way in (bf16 precision).
        public let bf16: Bool
        public init(batch: Int, height: Int, width: Int, threads: Int, bf16: Bool = false) {
            (self.batch, self.height, self.width, self.threads, self.bf16) = (batch, height, width, threads, bf16)
        }
    }

    private let plan: OpaquePointer
    public let key: Key
    /// oneDNN's implementations, e.g. "jit:avx512_core / ... (reordered layouts)".
    public let implementation: String

    /// Throws `.blas` (a field library's failure) when oneDNN is missing or refuses the shape.
    public init(
        key: Key, inChannels: Int, outChannels: Int, groups: Int, window w: Window2d, planes p: PlaneSizes, bias: Bool
    ) throws {
        if let e = OneDNN.loadError { throw ParmlError.blas(e) }
        var s = pml_conv_shape(
            batch: Int64(key.batch), in_channels: Int64(inChannels), out_channels: Int64(outChannels), groups: Int64(groups),
            height: Int64(p.height), width: Int64(p.width), out_height: Int64(p.outHeight), out_width: Int64(p.outWidth),
            kernel_h: Int64(w.kernelH), kernel_w: Int64(w.kernelW), stride_h: Int64(w.strideH), stride_w: Int64(w.strideW),
            pad_h: Int64(w.padH), pad_w: Int64(w.padW), dilation_h: Int64(w.dilationH), dilation_w: Int64(w.dilationW),
            has_bias: bias ? 1 : 0, threads: Int32(clamping: key.threads), bf16: key.bf16 ? 1 : 0)
        let made = try shimPlan { pml_conv_plan_create(&s, $0, $1) }
        plan = made
        self.key = key
        implementation = String(cString: pml_conv_plan_impl(made))
    }

    deinit { pml_conv_plan_free(plan) }

    /// y = conv(x, w) + b.
    public func forward(
        _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>
    ) throws {
        let st = pml_conv_forward(plan, x, w, b, y)
        if st != 0 { throw ParmlError.blas("oneDNN convolution forward failed (status \(st))") }
    }

    /// dw and db overwritten; dx too unless nil; with dw nil, dx only (db
    /// untouched). After a forward of this plan on x and w.
    public func backward(
        _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>?,
        db: UnsafeMutablePointer<Float>?, dx: UnsafeMutablePointer<Float>?
    ) throws {
        let st = pml_conv_backward(plan, x, w, dy, dw, db, dx)
        if st != 0 { throw ParmlError.blas("oneDNN convolution backward failed (status \(st))") }
    }
}
