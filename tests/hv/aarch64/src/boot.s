// Entry at EL2 (QEMU virt, virtualization=on), the EL2 vectors and the
// world switch.

.section .text.boot, "ax"
.global _start
_start:
    ldr     x0, =__stack_top
    mov     sp, x0
    ldr     x0, =__bss_start
    ldr     x1, =__bss_end
1:  cmp     x0, x1
    b.hs    2f
    str     xzr, [x0], #8
    b       1b
2:  // CPTR_EL2 (E2H = 0): RES1 bits 13:12 and 9:0, TFP (bit 10) = 0 so
    // the hypervisor may use FP/SIMD registers.
    mov     x0, #0x33ff
    msr     cptr_el2, x0
    ldr     x0, =hv_vectors
    msr     vbar_el2, x0
    isb
    bl      hv_main
3:  wfe
    b       3b

// An exception the hypervisor does not expect: report it.
.macro unexpected n
    .balign 128
    mov     x0, #\n
    mrs     x1, esr_el2
    mrs     x2, elr_el2
    mrs     x3, far_el2
    b       hv_unexpected
.endm

.section .text.vectors, "ax"
.balign 2048
hv_vectors:
    unexpected 0    // current EL with SP_EL0: sync
    unexpected 1
    unexpected 2
    unexpected 3
    unexpected 4    // current EL with SP_ELx: sync
    unexpected 5
    unexpected 6
    unexpected 7
    .balign 128     // lower EL, AArch64: sync (HVC, stage-2 aborts)
    b       hv_guest_exit
    unexpected 9
    unexpected 10
    unexpected 11
    unexpected 12   // lower EL, AArch32
    unexpected 13
    unexpected 14
    unexpected 15

// hv_enter(vcpu: *mut Vcpu { x: [u64; 4], pc: u64 }): saves the callee-saved
// registers and the vcpu pointer on the EL2 stack and enters the guest at
// EL1h with DAIF masked. The guest's exit to EL2 (SP_EL2 still points at
// the frame) stores its x0..x3 and returns from hv_enter.
.section .text, "ax"
.global hv_enter
hv_enter:
    sub     sp, sp, #112
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    str     x0, [sp, #96]
    ldr     x1, [x0, #32]
    msr     elr_el2, x1
    mov     x1, #0x3c5      // EL1h, D A I F masked
    msr     spsr_el2, x1
    ldp     x2, x3, [x0, #16]
    ldp     x0, x1, [x0, #0]
    eret

hv_guest_exit:
    ldr     x4, [sp, #96]
    stp     x0, x1, [x4, #0]
    stp     x2, x3, [x4, #16]
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    add     sp, sp, #112
    ret
