import ParmlTensor

#if canImport(Glibc)
import Glibc
#endif

/// One rank's communication thread (overlap): backward hands it gradient
/// buckets as each becomes ready, and it reduces them, first in first out,
/// while the rank's own thread computes earlier layers; the step waits for
/// all of them (`finish`) before the optimizer. One thread per rank, started
/// with the trainer and reused every step: a step allocates nothing here.
///
/// Only this thread uses the rank's data-parallel communicator while a
/// step's buckets are in flight; the rank's thread keeps the others (pipe,
/// tensor, world), so each communicator still has one user at a time. Under
/// MPI the shim serialises the calls of both threads (MPI_THREAD_SERIALIZED).
///
/// A bucket that throws (an aborted world, a timeout) stops the rest of the
/// step's buckets; `finish` rethrows its error.
final class CommunicationThread {
    /// A bucket: the run (`VirtualStage.index`) and its bucket index.
    struct Job {
        var run: Int
        var bucket: Int
    }

    private let state: State
    private var thread = pthread_t()

    /// Starts the thread; `capacity` is the most buckets one step hands over.
    /// `work` runs on the thread (it must not keep the rank alive: capture
    /// it unowned).
    init(capacity: Int, work: @escaping (Job) throws -> Void) throws {
        state = State(capacity: capacity, work: work)
        let context = Unmanaged.passRetained(state)
        let rc = pthread_create(
            &thread, nil,
            { arg in
                Unmanaged<State>.fromOpaque(arg!).takeRetainedValue().loop()
                return nil
            }, context.toOpaque())
        if rc != 0 {
            context.release()
            throw ParmlError.outOfMemory("overlap: could not start the communication thread (pthread_create: \(rc))")
        }
    }

    deinit {
        state.stop()
        pthread_join(thread, nil)
    }

    /// Queues a bucket (the rank's thread, during backward).
    func submit(run: Int, bucket: Int) throws {
        try state.submit(Job(run: run, bucket: bucket))
    }

    /// Waits until every bucket handed over this step is reduced, then
    /// rethrows the first failure, if any. The queue is empty afterwards.
    func finish() throws {
        if let error = state.drain() { throw error }
    }

    /// Whether a bucket is queued or being reduced.
    var busy: Bool { state.busy }

    /// After a failed step: waits for the thread to stop touching the
    /// gradients and forgets its error (the step's own is the one to report).
    func quiesce() { _ = state.drain() }

    /// What the rank's thread and the communication thread share, behind one mutex.
    private final class State {
        private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
        private var jobs: [Job]
        /// Jobs queued, taken by the thread and finished since the last drain.
        private var queued = 0
        private var finished = 0
        private var failure: (any Error)?
        private var stopping = false
        private let work: (Job) throws -> Void

        init(capacity: Int, work: @escaping (Job) throws -> Void) {
            jobs = [Job](repeating: Job(run: 0, bucket: 0), count: max(capacity, 1))
            self.work = work
            pthread_mutex_init(mutex, nil)
            pthread_cond_init(cond, nil)
        }

        deinit {
            pthread_cond_destroy(cond)
            pthread_mutex_destroy(mutex)
            cond.deallocate()
            mutex.deallocate()
        }

        func submit(_ job: Job) throws {
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            guard queued < jobs.count else {
                throw ParmlError.internal("overlap: more than \(jobs.count) buckets in one step")
            }
            jobs[queued] = job
            queued += 1
            pthread_cond_broadcast(cond)
        }

        var busy: Bool {
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            return finished < queued
        }

        func drain() -> (any Error)? {
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            while finished < queued { pthread_cond_wait(cond, mutex) }
            let error = failure
            (queued, finished, failure) = (0, 0, nil)
            return error
        }

        func stop() {
            pthread_mutex_lock(mutex)
            stopping = true
            pthread_cond_broadcast(cond)
            pthread_mutex_unlock(mutex)
        }

        /// The thread: takes jobs in order until stopped.
        func loop() {
            pthread_mutex_lock(mutex)
            while true {
                while finished == queued && !stopping { pthread_cond_wait(cond, mutex) }
                if finished == queued { break }  // stopping, nothing left
                let job = jobs[finished]
                let failed = failure != nil
                pthread_mutex_unlock(mutex)
                var error: (any Error)?
                if !failed {
                    do { try work(job) } catch let e { error = e }
                }
                pthread_mutex_lock(mutex)
                if let error, failure == nil { failure = error }
                finished += 1
                pthread_cond_broadcast(cond)
            }
            pthread_mutex_unlock(mutex)
        }
    }
}
