import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The messages one rank sent another and the other has not received yet,
/// in order. Send copies into a reusable message buffer (taken from the free
/// list, grown only when too small); receive copies out and returns the
/// buffer to the free list, so a steady exchange allocates nothing.
///
/// One sender thread and one receiver thread per mailbox. `@unchecked
/// Sendable`: the queue and free list live behind the mutex (a pthread
/// mutex: ThreadSanitizer cannot see the hand-over of Synchronization.Mutex's
/// priority-inheritance futex on Linux and reports false races); `sent` is atomic;
/// `sentByOwner` is touched only by the sender thread and `received` only by
/// the receiver thread.
final class Mailbox: @unchecked Sendable {
    /// `@unchecked Sendable`: a message's buffer belongs to whoever holds
    /// the message (the queue, the free list, or one thread between them).
    struct Message: @unchecked Sendable {
        var data: UnsafeMutablePointer<Float>?
        var capacity = 0
        var count = 0
    }

    private struct Queue {
        var ring: [Message] = []
        var head = 0
        var queued = 0
        var free: [Message] = []

        mutating func push(_ m: Message) {
            if queued == ring.count {
                // Grow (rare): keep FIFO order, oldest first.
                var bigger: [Message] = []
                bigger.reserveCapacity(max(4, 2 * ring.count))
                for i in 0..<queued { bigger.append(ring[(head + i) % ring.count]) }
                while bigger.count < bigger.capacity { bigger.append(Message()) }
                ring = bigger
                head = 0
            }
            ring[(head + queued) % ring.count] = m
            queued += 1
        }

        mutating func pop() -> Message {
            let m = ring[head]
            ring[head] = Message()
            head = (head + 1) % ring.count
            queued -= 1
            return m
        }
    }

    private var queue = Queue()
    private let mutex: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(m, nil)
        return m
    }()
    /// Messages enqueued so far (the receiver waits on it).
    let sent = Atomic<Int>(0)
    /// Sender thread only: messages sent (for error messages).
    var sentByOwner = 0
    /// Receiver thread only: messages taken.
    var received = 0

    deinit {
        for m in queue.ring { m.data?.deallocate() }
        for m in queue.free { m.data?.deallocate() }
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always)
    private func locked<R>(_ body: (inout Queue) -> R) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body(&queue)
    }

    /// Sender thread: makes room for `messages` messages of up to `floats`
    /// floats in flight at once, so that sends within that bound allocate
    /// nothing whatever the receiver's timing.
    func reserve(messages: Int, floats: Int) {
        locked { q in
            if q.ring.count < messages {
                var bigger: [Message] = []
                bigger.reserveCapacity(messages)
                for i in 0..<q.queued { bigger.append(q.ring[(q.head + i) % q.ring.count]) }
                while bigger.count < messages { bigger.append(Message()) }
                q.ring = bigger
                q.head = 0
            }
            q.free.reserveCapacity(messages)
            while q.free.count + q.queued < messages { q.free.append(Message()) }
            for i in q.free.indices where q.free[i].capacity < floats {
                q.free[i].data?.deallocate()
                q.free[i].data = .allocate(capacity: floats)
                q.free[i].capacity = floats
            }
        }
    }

    /// Copies `count` floats into a message and enqueues it.
    func post(_ buffer: UnsafePointer<Float>, count: Int) {
        var m = locked { q in q.free.popLast() } ?? Message()
        if m.capacity < count {
            m.data?.deallocate()
            let capacity = max(count, 2 * m.capacity)
            m.data = .allocate(capacity: capacity)
            m.capacity = capacity
        }
        if count > 0 { m.data!.update(from: buffer, count: count) }
        m.count = count
        locked { q in q.push(m) }
        sent.add(1, ordering: .sequentiallyConsistent)
    }

    /// Takes the oldest message (one must be queued) and copies it into
    /// `buffer` when its length is `count`. Returns the message's length; the
    /// message is consumed either way.
    func take(into buffer: UnsafeMutablePointer<Float>, count: Int) -> Int {
        let m = locked { q in q.pop() }
        if m.count == count && count > 0 { buffer.update(from: m.data!, count: count) }
        locked { q in q.free.append(m) }
        received += 1
        return m.count
    }
}
