// The EL2 vectors and world switch for a whole guest (U-Boot): every
// general-purpose and FP/SIMD register, ELR_EL2 and SPSR_EL2 are saved on
// each exit and restored on each entry. The guest's EL1 system registers
// are its own (the hypervisor does not use EL1).
//
// struct Ctx (16-byte aligned): x[31] at 0, pc (ELR_EL2) at 248, spsr at
// 256, q[32] at 272.

.macro uexp n
    .balign 128
    mov     x0, #\n
    mrs     x1, esr_el2
    mrs     x2, elr_el2
    mrs     x3, far_el2
    b       hv_unexpected
.endm

.section .text, "ax"
.balign 2048
.global uv_vectors
uv_vectors:
    uexp 0          // current EL with SP_EL0
    uexp 1
    uexp 2
    uexp 3
    uexp 4          // current EL with SP_ELx
    uexp 5
    uexp 6
    uexp 7
    .balign 128     // lower EL, AArch64: sync (SMC, HVC, stage-2 aborts)
    b       uv_exit
    uexp 9          // lower EL IRQ, FIQ, SError: not routed to EL2
    uexp 10
    uexp 11
    uexp 12         // lower EL, AArch32
    uexp 13
    uexp 14
    uexp 15

// uv_enter(ctx: *mut Ctx): saves the callee-saved registers and ctx on the
// EL2 stack and enters the guest; returns when the guest exits.
.global uv_enter
uv_enter:
    sub     sp, sp, #112
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    str     x0, [sp, #96]
    ldr     x1, [x0, #248]
    msr     elr_el2, x1
    ldr     x1, [x0, #256]
    msr     spsr_el2, x1
    add     x1, x0, #272
    ldp     q0, q1, [x1, #0]
    ldp     q2, q3, [x1, #32]
    ldp     q4, q5, [x1, #64]
    ldp     q6, q7, [x1, #96]
    ldp     q8, q9, [x1, #128]
    ldp     q10, q11, [x1, #160]
    ldp     q12, q13, [x1, #192]
    ldp     q14, q15, [x1, #224]
    ldp     q16, q17, [x1, #256]
    ldp     q18, q19, [x1, #288]
    ldp     q20, q21, [x1, #320]
    ldp     q22, q23, [x1, #352]
    ldp     q24, q25, [x1, #384]
    ldp     q26, q27, [x1, #416]
    ldp     q28, q29, [x1, #448]
    ldp     q30, q31, [x1, #480]
    ldp     x2, x3, [x0, #16]
    ldp     x4, x5, [x0, #32]
    ldp     x6, x7, [x0, #48]
    ldp     x8, x9, [x0, #64]
    ldp     x10, x11, [x0, #80]
    ldp     x12, x13, [x0, #96]
    ldp     x14, x15, [x0, #112]
    ldp     x16, x17, [x0, #128]
    ldp     x18, x19, [x0, #144]
    ldp     x20, x21, [x0, #160]
    ldp     x22, x23, [x0, #176]
    ldp     x24, x25, [x0, #192]
    ldp     x26, x27, [x0, #208]
    ldp     x28, x29, [x0, #224]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0, #0]
    eret

uv_exit:
    stp     x0, x1, [sp, #-16]!
    ldr     x0, [sp, #112]
    stp     x2, x3, [x0, #16]
    stp     x4, x5, [x0, #32]
    stp     x6, x7, [x0, #48]
    stp     x8, x9, [x0, #64]
    stp     x10, x11, [x0, #80]
    stp     x12, x13, [x0, #96]
    stp     x14, x15, [x0, #112]
    stp     x16, x17, [x0, #128]
    stp     x18, x19, [x0, #144]
    stp     x20, x21, [x0, #160]
    stp     x22, x23, [x0, #176]
    stp     x24, x25, [x0, #192]
    stp     x26, x27, [x0, #208]
    stp     x28, x29, [x0, #224]
    str     x30, [x0, #240]
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0, #0]
    mrs     x1, elr_el2
    str     x1, [x0, #248]
    mrs     x1, spsr_el2
    str     x1, [x0, #256]
    add     x1, x0, #272
    stp     q0, q1, [x1, #0]
    stp     q2, q3, [x1, #32]
    stp     q4, q5, [x1, #64]
    stp     q6, q7, [x1, #96]
    stp     q8, q9, [x1, #128]
    stp     q10, q11, [x1, #160]
    stp     q12, q13, [x1, #192]
    stp     q14, q15, [x1, #224]
    stp     q16, q17, [x1, #256]
    stp     q18, q19, [x1, #288]
    stp     q20, q21, [x1, #320]
    stp     q22, q23, [x1, #352]
    stp     q24, q25, [x1, #384]
    stp     q26, q27, [x1, #416]
    stp     q28, q29, [x1, #448]
    stp     q30, q31, [x1, #480]
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    add     sp, sp, #112
    ret
