# The gated lock of csrc/engine/gated_lock.h, whose gate is a PyThread lock here: a Sender's
# producer lock and a Receiver's consumer lock.


cdef PyThread_type_lock new_gate(str owner) except NULL:
    """A gate for a gated lock, shut (a release opens it for a waiter)."""
    cdef PyThread_type_lock gate = PyThread_allocate_lock()
    if gate == NULL:
        raise MemoryError(f"cannot allocate the {owner}'s lock")
    PyThread_acquire_lock(gate, NOWAIT_LOCK)
    return gate


cdef void gated_lock_take(fm_gated_lock *lock, PyThread_type_lock gate) noexcept nogil:
    """Takes the lock, sleeping on its gate while another thread holds it, with no timeout and
    deaf to signals: for holders that give it back soon."""
    if fm_glock_try(lock):
        return
    fm_glock_announce(lock)
    while not fm_glock_try(lock):
        PyThread_acquire_lock(gate, WAIT_LOCK)
        fm_glock_passed(lock)
    fm_glock_withdraw(lock)


cdef inline void gated_lock_give(fm_gated_lock *lock, PyThread_type_lock gate) noexcept nogil:
    """Gives the lock back, opening the gate if a thread waits."""
    if fm_glock_release(lock):
        PyThread_release_lock(gate)
