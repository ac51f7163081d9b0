//===- frontend/parser.h - the kiln DSL parser ------------------*- C++ -*-===//
//
// Recursive descent over the tokens of frontend/lexer.h, producing the AST of
// frontend/ast.h. The grammar:
//
//   program  := (hparam | module | model | function)*
//   hparam   := 'param' IDENT '=' expr
//   module   := 'module' IDENT '(' [binding (',' binding)*] ')' '{' (member | function)* '}'
//   model    := 'model' IDENT '{' (member | function)* '}'
//   member   := IDENT '=' call
//   function := 'fn' IDENT '(' [binding (',' binding)*] ')' ['->' outputs] '{' stmt* '}'
//   outputs  := binding | '(' binding (',' binding)* ')'
//   binding  := IDENT [':' type]
//   type     := IDENT '[' [expr (',' expr)*] ']'
//   stmt     := 'let' IDENT '=' expr | IDENT '=' expr | 'return' expr (',' expr)*   [';']
//   expr     := compare;  compare := sum (('=='|'!='|'<'|'<='|'>'|'>=') sum)*
//   sum      := product (('+'|'-') product)*;  product := unary (('*'|'/'|'@') unary)*
//   unary    := '-' unary | primary
//   primary  := NUMBER | 'true' | 'false' | IDENT | call | '(' expr ')'
//   call     := IDENT '(' [arg (',' arg)*] ')';  arg := [IDENT '='] expr
//
// Expression nesting is bounded so that hostile input cannot exhaust the stack.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "frontend/ast.h"

namespace kiln::frontend {

/// Parses DSL text; throws kiln::Error located at the offending token.
Program parseProgram(const std::string &text, const std::string &file);

} // namespace kiln::frontend
