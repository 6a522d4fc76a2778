#pragma once
// The visitor of a std::variant made of one lambda per alternative:
// std::visit(Overloaded{[](const A&) {...}, [](const B&) {...}}, v).

namespace tranche {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
// Clang before 17 deduces no aggregate's template arguments (P1816), and the
// sanitized tree (tests/fuzz/README.md) compiles with clang 16.
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

}  // namespace tranche
