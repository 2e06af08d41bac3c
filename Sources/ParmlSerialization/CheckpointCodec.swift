import CParmlProto
import ParmlModel
import ParmlTensor
import ParmlTraining

/// A trainer's state as a parml.Checkpoint message: the model, whole
/// optimizer state, step and epoch counts, seed, the layout it ran under,
/// and the private steps the accountant counts.
public enum CheckpointFile {
    /// The checkpoint's bytes; with a key, authenticated (FileAuthentication).
    public static func encode(_ trainer: Trainer, key: UnsafeRawBufferPointer? = nil) throws -> EncodedBytes {
        if let key { try FileAuthentication.check(key) }
        return try withMessage(trainer) { c in try key.map { try FileFormat.packSealed(c, key: $0) } ?? FileFormat.packSealed(c) }
    }

    /// Writes the checkpoint to `path` atomically, packing straight into it
    /// (with a key: packed in memory, then written). On the MPI backend
    /// every process gathers the state (collective) and world rank 0 writes
    /// the file.
    public static func write(_ trainer: Trainer, to path: String, key: UnsafeRawBufferPointer? = nil) throws {
        if let key { try FileAuthentication.check(key) }
        try withMessage(trainer) { c in
            guard trainer.writesCheckpointFiles else { return }
            if let key {
                let bytes = try FileFormat.packSealed(c, key: key)
                try FileIO.writeAtomically(bytes.bytes, to: path)
                return
            }
            try FileIO.writeAtomically(to: path) { fd, tmp in try FileFormat.packSealed(c, to: fd, path: tmp) }
        }
    }

    /// Builds the message for `trainer` and hands it to `body` (valid only there).
    private static func withMessage<R>(_ trainer: Trainer, _ body: (UnsafePointer<ProtobufCMessage>) throws -> R) throws -> R {
        let state = try trainer.captureState()
        let arena = PackArena()
        let c = try arena.allocate(Parml__Checkpoint.self, count: 1)
        parml__checkpoint__init(c)
        c.pointee.magic = try arena.string(FileFormat.checkpointMagic)
        c.pointee.format_version = FileFormat.version
        c.pointee.step = Int64(state.step)
        c.pointee.epoch = Int64(state.epoch)
        c.pointee.seed = state.seed
        let model = try arena.allocate(Parml__Model.self, count: 1)
        try ModelCodec.fill(model, from: trainer.model, arena: arena)
        c.pointee.model = model
        c.pointee.optimizer = try optimizer(state, names: trainer.optimizerStateNames + trainer.outerStateNames, arena: arena)
        c.pointee.layout = try layout(state.strategy, arena: arena)
        let record = trainer.privacyRecord
        if !record.isEmpty {
            let runs = try arena.allocate(UnsafeMutablePointer<Parml__PrivacyRun>?.self, count: record.count)
            for (k, e) in record.enumerated() {
                let r = try arena.allocate(Parml__PrivacyRun.self, count: 1)
                parml__privacy_run__init(r)
                r.pointee.sampling_rate = e.samplingRate
                r.pointee.noise_multiplier = e.noiseMultiplier
                r.pointee.steps = Int64(e.steps)
                runs[k] = r
            }
            c.pointee.n_privacy = record.count
            c.pointee.privacy = runs
        }
        return try withExtendedLifetime((trainer, state, arena)) {
            try body(UnsafeRawPointer(c).assumingMemoryBound(to: ProtobufCMessage.self))
        }
    }

    private static func optimizer(_ s: TrainingState, names: [String], arena: PackArena) throws -> UnsafeMutablePointer<Parml__OptimizerState> {
        let o = try arena.allocate(Parml__OptimizerState.self, count: 1)
        parml__optimizer_state__init(o)
        let cfg = s.optimizer
        o.pointee.kind = Parml__OptimizerState__Kind(rawValue: UInt32(cfg.kind.rawValue))
        o.pointee.learning_rate = cfg.learningRate
        o.pointee.momentum = cfg.momentum
        o.pointee.nesterov = cfg.nesterov ? 1 : 0
        o.pointee.weight_decay = cfg.weightDecay
        o.pointee.beta1 = cfg.beta1
        o.pointee.beta2 = cfg.beta2
        o.pointee.epsilon = cfg.epsilon
        o.pointee.clip_grad_norm = cfg.clipGradNorm
        o.pointee.decay_by_kind = cfg.decayByKind ? 1 : 0
        o.pointee.learning_rate_scale = s.learningRateScale == 1 ? 0 : s.learningRateScale
        let sch = try arena.allocate(Parml__Schedule.self, count: 1)
        parml__schedule__init(sch)
        sch.pointee.kind = Parml__Schedule__Kind(rawValue: UInt32(cfg.schedule.kind.rawValue))
        sch.pointee.warmup_steps = Int64(cfg.schedule.warmupSteps)
        sch.pointee.step_size = Int64(cfg.schedule.stepSize)
        sch.pointee.gamma = cfg.schedule.gamma
        sch.pointee.total_steps = Int64(cfg.schedule.totalSteps)
        sch.pointee.min_lr = cfg.schedule.minLearningRate
        o.pointee.schedule = sch
        // The optimizer's buffers, then local SGD's outer state (named outer_*).
        let tensors = s.optimizerState + s.outerState
        let list = try arena.allocate(UnsafeMutablePointer<Parml__Tensor>?.self, count: tensors.count)
        for (k, t) in tensors.enumerated() {
            let m = try arena.allocate(Parml__Tensor.self, count: 1)
            try TensorCodec.fill(m, from: t, name: names[k], arena: arena)
            list[k] = m
        }
        o.pointee.n_state = tensors.count
        o.pointee.state = list
        return o
    }

    private static func layout(_ s: StrategyConfig, arena: PackArena) throws -> UnsafeMutablePointer<Parml__Layout> {
        let l = try arena.allocate(Parml__Layout.self, count: 1)
        parml__layout__init(l)
        l.pointee.dp = Int64(s.dp)
        l.pointee.tp = Int64(s.tp)
        l.pointee.pp = Int64(s.pp)
        l.pointee.zero_stage = Int64(s.zeroStage)
        l.pointee.micro_batches = Int64(s.microBatches)
        l.pointee.backend = Parml__Layout__Backend(rawValue: UInt32(s.backend.rawValue))
        l.pointee.deterministic = s.deterministic ? 1 : 0
        l.pointee.grad_chunk = Int64(s.gradientChunk)
        return l
    }

    /// Loads a checkpoint into `trainer`, whose model must have the same
    /// layers: parameters, optimizer state (scattered to however the trainer
    /// shards it), step and epoch counts. Everything is checked first; nothing
    /// changes when it throws.
    /// `key`: the key the file must be authenticated with; nil refuses an
    /// authenticated file.
    public static func restore(_ bytes: UnsafeRawBufferPointer, into trainer: Trainer, key: UnsafeRawBufferPointer? = nil) throws {
        try restore(bytes, knownCRC: nil, into: trainer, key: key)
    }

    /// The same from a file read by FileIO.readSealed (whose CRC is known).
    public static func restore(_ file: EncodedBytes, into trainer: Trainer, key: UnsafeRawBufferPointer? = nil) throws {
        try restore(file.bytes, knownCRC: file.crc, into: trainer, key: key)
    }

    private static func restore(
        _ bytes: UnsafeRawBufferPointer, knownCRC: (covered: Int, value: UInt32)?, into trainer: Trainer, key: UnsafeRawBufferPointer?
    ) throws {
        let u = try FileFormat.checkpoint(bytes, known: knownCRC, what: "checkpoint", key: key)
        let c = u.message.pointee
        guard let mp = c.model else { throw ParmlError.format("the checkpoint has no model") }
        guard let op = c.optimizer else { throw ParmlError.format("the checkpoint has no optimizer state") }
        // The file's layers are checked and compared without building them:
        // the parameters go straight into the trainer's arena.
        let (loaded, parameters) = try ModelCodec.layers(from: mp.pointee, allowBFloat16: false)
        let theirs = ModelCodec.structure(of: loaded), ours = ModelCodec.structure(of: trainer.model)
        guard theirs == ours else {
            let i = theirs.indices.first { $0 >= ours.count || theirs[$0] != ours[$0] } ?? ours.count
            let a = i < theirs.count ? theirs[i] : "(none)", b = i < ours.count ? ours[i] : "(none)"
            throw ParmlError.invalidArgument(
                "the checkpoint's model differs from the trainer's at layer \(i): checkpoint '\(a)', trainer '\(b)'")
        }
        let o = op.pointee
        guard let kind = OptimizerKind(rawValue: Int32(bitPattern: o.kind.rawValue)) else {
            throw ParmlError.format("optimizer kind \(o.kind.rawValue) is unknown to this version")
        }
        var state: [Tensor] = [], outer: [Tensor] = []
        for k in 0..<o.n_state {
            let m = try TensorCodec.element(o.state, k, what: "optimizer state \(k)")
            let t = try TensorCodec.tensor(from: m, what: "optimizer state \(k)")
            if m.name.map({ String(cString: $0).hasPrefix("outer_") }) == true { outer.append(t) } else { state.append(t) }
        }
        var record: [PrivacyLedgerEntry] = []
        for k in 0..<c.n_privacy {
            guard let r = c.privacy?[k] else { throw ParmlError.format("the checkpoint's privacy record \(k) is missing") }
            let e = PrivacyLedgerEntry(
                samplingRate: r.pointee.sampling_rate, noiseMultiplier: r.pointee.noise_multiplier, steps: Int(r.pointee.steps))
            try e.validate()
            record.append(e)
        }
        try trainer.restoreState(
            step: Int(c.step), epoch: Int(c.epoch), optimizerKind: kind, optimizerState: state,
            learningRateScale: o.learning_rate_scale == 0 ? 1 : o.learning_rate_scale, outerState: outer)
        try trainer.model.updateParameters { arena, infos in try ModelCodec.copy(parameters, into: arena, infos) }
        try trainer.placeOuterState(outer)
        try trainer.restorePrivacyRecord(record)  // validated above: cannot throw here
    }
}

extension ModelCodec {
    /// One line per layer (depth, kind, attributes): two models with the same
    /// lines have the same parameter layout and compute the same function of
    /// their parameters.
    static func structure(of model: Model) -> [String] {
        layerDescriptions(of: model).map { "depth \($0.depth) \($0.text)" }
    }

    /// Every layer in file order (a block's body after it, one level
    /// deeper) with its kind and attributes as text ("linear in_features=784
    /// out_features=1024 bias=true").
    static func layerDescriptions(of model: Model) -> [(depth: Int, layer: Layer, text: String)] {
        var out: [(depth: Int, layer: Layer, text: String)] = []
        func visit(_ l: Layer, depth: Int) {
            let attributes = l.attributes.text
            out.append((depth, l, attributes.isEmpty ? l.kind : l.kind + " " + attributes))
            if let b = l as? BlockLayer { for c in b.body.layers { visit(c, depth: depth + 1) } }
        }
        for l in model.root.layers { visit(l, depth: 0) }
        return out
    }
}
