// The guest: EL1, stage 1 off. One page, mapped by stage 2 at G_CODE; the
// hypervisor enters a routine with x0..x3 set. Each ends in HVC #0 unless
// it faults first.

.section .guest_text, "ax"
.balign 4096
.global guest_start, g_copy, g_load, g_store, g_call, guest_vectors
guest_start:

// x0 = source GPA, x1 = destination GPA, x2 = words (> 0), x3 = XOR key.
g_copy:
    ldr     x4, [x0], #8
    eor     x4, x4, x3
    str     x4, [x1], #8
    subs    x2, x2, #1
    b.ne    g_copy
    dsb     sy
    hvc     #0

// x1 = [x0]
g_load:
    ldr     x1, [x0]
    hvc     #0

// [x0] = x1
g_store:
    str     x1, [x0]
    dsb     sy
    hvc     #0

// Calls x0 (which should exit by itself).
g_call:
    blr     x0
    hvc     #0x77

// Any exception taken to the guest's EL1: report ESR_EL1, ELR_EL1, FAR_EL1.
.balign 2048
guest_vectors:
.rept 16
    .balign 128
    mrs     x1, esr_el1
    mrs     x2, elr_el1
    mrs     x3, far_el1
    hvc     #0xe1
.endr
.balign 4096
